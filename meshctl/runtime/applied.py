"""What the sidecars run now (applied.json) and the revisions applied before (history.json)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from meshctl.compile.compiler import CompiledMesh, config_hash
from meshctl.runtime.plan import Plan
from meshctl.runtime.state import StateDir, read_json, write_json


@dataclass(frozen=True)
class Applied:
    revision: str
    source_digest: str
    configs: dict[str, str]  # sidecar name -> sha256 of its compiled JSON


def read_applied(state: StateDir) -> Applied | None:
    raw = read_json(state.applied)
    if not raw:
        return None
    return Applied(raw["revision"], raw.get("source_digest", ""), dict(raw.get("configs", {})))


def record_applied(
    state: StateDir,
    compiled: CompiledMesh,
    plan: Plan,
    *,
    action: str = "up",
    note: str = "",
    rendered: dict[str, str] | None = None,
) -> None:
    rendered = rendered if rendered is not None else compiled.rendered()
    write_json(
        state.applied,
        {
            "revision": compiled.revision,
            "source_digest": compiled.source_digest,
            "configs": {name: config_hash(text) for name, text in rendered.items()},
            "instances": sorted(s.instance for s in plan.sidecars),
        },
    )
    append_history(state, compiled.revision, action=action, note=note)


def append_history(state: StateDir, revision: str, *, action: str, note: str = "") -> None:
    entries: list[dict[str, Any]] = read_json(state.history, []) or []
    entries.append({"revision": revision, "action": action, "at": time.time(), "note": note})
    write_json(state.history, entries[-200:])


def read_history(state: StateDir) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = read_json(state.history, []) or []
    return entries
