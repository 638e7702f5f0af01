"""The state directory: where the local runtime keeps everything it owns, and nothing else.

Layout (every JSON file a typed record with a `version`, written atomically):
  plan.json                 desired processes and instances (written by up/apply)   runtime.plan
  state.json                observed processes: pids, health, restarts (the daemon) runtime.observed
  ports.json                port assignments, stable across restarts and `up` runs  runtime.ports
  applied.json              the revision the sidecars run, each config's hash       runtime.applied
  history.json              revisions applied, newest last: the one history         runtime.applied
  supervisor.lock           flock-ed by the daemon for its whole life: who owns this directory
  supervisor.pid            the daemon's pid and start time (a hint; the lock decides)
  compiled/<revision>/      compiled output of each revision applied (manifest + configs)
  sidecars/<instance>/      config.json, bindings.json, confdir/ (mitmproxy's own files)
  ca/                       the mesh CA and issued certificates
  logs/<process>.log        stdout+stderr of every process

A state file that is missing where it must exist, truncated, not JSON, of another version or of
the wrong shape is a `StateFileError` (exit 2) naming the file and what to do; reading never
repairs or rewrites anything, so nothing else in the directory is lost.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from meshctl.errors import UsageError
from meshctl.fsio import write_atomic

if TYPE_CHECKING:
    from pydantic import TypeAdapter

STATE_ENV = "MESHCTL_STATE"
T = TypeVar("T")


def resolve_state_dir(policy_dir: Path, state: Path | None) -> Path:
    """--state, else $MESHCTL_STATE, else `.meshctl/` beside the policy directory."""
    if state is not None:
        return state.resolve()
    env = os.environ.get(STATE_ENV)
    if env:
        return Path(env).resolve()
    return (policy_dir.resolve().parent / ".meshctl").resolve()


class StateFileError(UsageError):
    """A state file meshctl cannot trust; the message names it and says what to do."""


@dataclass(frozen=True)
class Record:
    """One kind of state file: its name, the version it is written with, its type and the
    advice given when it is damaged."""

    name: str
    version: str
    type: Any
    remedy: str

    def path(self, root: Path) -> Path:
        return root / self.name


@cache
def _adapter(tp: Any) -> TypeAdapter[Any]:
    # pydantic is imported at the first record read or written, not with the paths: the
    # daemon's entry point uses StateDir before it imports anything heavy (`runtime.daemon`).
    from pydantic import TypeAdapter

    return TypeAdapter(tp)


def read_record(path: Path, record: Record, *, required: bool = False) -> Any:
    """The typed value in `path`, or None when it does not exist (StateFileError if `required`)."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise StateFileError(f"{path} is missing; {record.remedy}") from None
        return None
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StateFileError(
            f"{path} is not valid JSON (truncated or damaged: {exc}); {record.remedy}"
        ) from None
    if not isinstance(raw, dict):
        raise StateFileError(f"{path} does not hold a {record.name} record; {record.remedy}")
    version = raw.pop("version", None)
    if version != record.version:
        raise StateFileError(
            f"{path} was written by another meshctl (version {version!r}; this one reads "
            f"{record.version!r}); {record.remedy}"
        )
    if dataclasses.is_dataclass(record.type):
        unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(record.type)})
        if unknown:
            raise StateFileError(
                f"{path} is damaged (unknown field {unknown[0]!r}); {record.remedy}"
            )
    adapter = _adapter(record.type)
    from pydantic import ValidationError

    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise StateFileError(
            f"{path} is damaged ({where}: {first['msg']}); {record.remedy}"
        ) from None


def write_record(path: Path, record: Record, value: Any) -> None:
    data = _adapter(record.type).dump_python(value, mode="json")
    write_atomic(path, json.dumps({"version": record.version, **data}, indent=1, sort_keys=True) + "\n")


@dataclass(frozen=True)
class StateDir:
    root: Path

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def pidfile(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def lockfile(self) -> Path:
        return self.root / "supervisor.lock"

    @property
    def ports(self) -> Path:
        return self.root / "ports.json"

    @property
    def applied(self) -> Path:
        return self.root / "applied.json"

    @property
    def history(self) -> Path:
        return self.root / "history.json"

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def compiled(self, revision: str) -> Path:
        return self.root / "compiled" / revision

    def sidecar_dir(self, instance: str) -> Path:
        return self.root / "sidecars" / instance

    def sidecar_config(self, instance: str) -> Path:
        return self.sidecar_dir(instance) / "config.json"

    def sidecar_bindings(self, instance: str) -> Path:
        return self.sidecar_dir(instance) / "bindings.json"

    def log(self, process: str) -> Path:
        return self.logs / f"{process}.log"

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        # The state dir holds keys and pids: keep it out of git even when it sits in the repo.
        ignore = self.root / ".gitignore"
        if not ignore.exists():
            write_atomic(ignore, "*\n")

    def daemon_pid(self) -> int | None:
        """The supervisor's pid while one runs on this directory (verified), else None."""
        from meshctl.runtime.ownership import running_supervisor

        return running_supervisor(self)
