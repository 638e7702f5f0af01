"""The state directory: where the local runtime keeps everything it owns, and nothing else.

Layout (all JSON written atomically, temp file + rename):
  plan.json                 desired processes and instances (written by up/apply)
  state.json                observed processes: pids, health, restarts (written by the daemon)
  supervisor.pid            the daemon's pid while it runs
  ports.json                port assignments, kept stable across restarts and `up` runs
  applied.json              the revision the sidecars run, and each sidecar config's hash
  history.json              revisions applied, newest last
  compiled/<revision>/      compiled output of each revision applied
  sidecars/<instance>/      config.json, bindings.json, confdir/ (mitmproxy's own files)
  ca/                       the mesh CA and issued certificates
  logs/<process>.log        stdout+stderr of every process
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshctl.fsio import write_atomic

STATE_ENV = "MESHCTL_STATE"


def resolve_state_dir(policy_dir: Path, state: Path | None) -> Path:
    """--state, else $MESHCTL_STATE, else `.meshctl/` beside the policy directory."""
    if state is not None:
        return state.resolve()
    env = os.environ.get(STATE_ENV)
    if env:
        return Path(env).resolve()
    return (policy_dir.resolve().parent / ".meshctl").resolve()


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


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
        """The supervisor's pid if it is alive, else None (a stale pid file is ignored)."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid
