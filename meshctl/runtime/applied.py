"""What the sidecars run now (applied.json) and the one history of what ran before (history.json).

history.json is the history: it records what git cannot (dirty work trees, failed applies and
why, `up`), and `status`/`history` read it without git. `refs/meshctl/applied` only names the
applied commit for `meshctl diff`; its reflog is not read by anything.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from meshctl.runtime.state import Record, StateDir, read_record, write_record

APPLIED_VERSION = "meshctl.dev/state/applied/v1"
HISTORY_VERSION = "meshctl.dev/state/history/v1"
HISTORY_KEPT = 200


@dataclass(frozen=True)
class Applied:
    revision: str
    source_digest: str
    configs: dict[str, str]  # sidecar name -> sha256 of its compiled JSON
    instances: tuple[str, ...] = ()


@dataclass(frozen=True)
class HistoryEntry:
    revision: str
    action: str  # up | apply | rollback | apply-failed | rollback-failed
    at: float
    note: str = ""


@dataclass
class History:
    entries: list[HistoryEntry] = field(default_factory=list)


APPLIED = Record(
    "applied.json", APPLIED_VERSION, Applied,
    "it names the revision the sidecars run: `meshctl apply REV` records it again",
)
HISTORY = Record(
    "history.json", HISTORY_VERSION, History,
    "move it aside (the history then starts empty) or restore it from a copy",
)


def config_hash(text: str) -> str:
    """As the manifest spells a config's hash."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def read_applied(state: StateDir) -> Applied | None:
    value: Applied | None = read_record(state.applied, APPLIED)
    return value


def read_history(state: StateDir) -> list[HistoryEntry]:
    value: History | None = read_record(state.history, HISTORY)
    return list(value.entries) if value else []


def record_applied(
    state: StateDir,
    revision: str,
    source_digest: str,
    rendered: Mapping[str, str],
    instances: list[str],
    *,
    action: str = "up",
    note: str = "",
) -> None:
    entries = read_history(state)  # first: a damaged history fails before anything is written
    write_record(
        state.applied, APPLIED,
        Applied(revision, source_digest, {n: config_hash(t) for n, t in sorted(rendered.items())},
                tuple(sorted(instances))),
    )
    _write_history(state, entries, revision, action, note)


def append_history(state: StateDir, revision: str, *, action: str, note: str = "") -> None:
    _write_history(state, read_history(state), revision, action, note)


def _write_history(
    state: StateDir, entries: list[HistoryEntry], revision: str, action: str, note: str
) -> None:
    entries.append(HistoryEntry(revision, action, time.time(), note))
    write_record(state.history, HISTORY, History(entries[-HISTORY_KEPT:]))
