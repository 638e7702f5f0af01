"""Where a `meshctl promote` stands, kept in the state directory so that an interrupted one can
go on (and the dashboard, a layer above rollout as promote is, can show it).

Written (atomically) before each step changes anything, so after Ctrl-C or a crash
`meshctl promote --resume` knows which step was under way and which weights were the last to
pass, and `--abort` knows what to restore. A damaged file is an environment error naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from meshctl.errors import UsageError
from meshctl.fsio import write_atomic
from meshctl.sources.worktree import display_path

Phase = Literal["step", "final", "rollback"]


class Journal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["meshctl.dev/promote/v1"] = "meshctl.dev/promote/v1"
    service: str
    target: str  # the version being promoted
    source: str  # the version it takes traffic from
    rule: str
    steps: list[int]
    interval_ms: int
    passed: int = 0  # steps whose analysis passed
    phase: Phase = "step"
    last_good: dict[str, int]  # weights of the last step that passed (at first: the start)
    commits: list[str] = []  # every commit this promotion made, oldest first


def path_in(state_root: Path) -> Path:
    return state_root / "promote.json"


def read(state_root: Path) -> Journal | None:
    path = path_in(state_root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot read {display_path(path)}: {exc.strerror}") from None
    try:
        return Journal.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]["msg"] if exc.errors() else "invalid"
        raise UsageError(
            f"{display_path(path)} is damaged ({first}); check `git log` for the promotion's "
            "commits, then delete the file to start again"
        ) from None


def write(state_root: Path, journal: Journal) -> None:
    write_atomic(path_in(state_root), journal.model_dump_json(indent=2) + "\n")


def remove(state_root: Path) -> None:
    path_in(state_root).unlink(missing_ok=True)
