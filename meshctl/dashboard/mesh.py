"""What the dashboard knows of the mesh besides traffic: plan, process state, compiled configs.

Read from the state directory on each tick (an apply changes all three); compiled configs are
parsed once per revision.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from meshctl.compiled import sidecar_file
from meshctl.contract import ContractError, SidecarConfig, parse_sidecar_config
from meshctl.runtime.applied import read_applied
from meshctl.runtime.control import ProcessView, load_plan, read_processes
from meshctl.runtime.plan import Plan, SidecarRecord
from meshctl.runtime.state import StateDir


@dataclass(frozen=True)
class MeshState:
    state: StateDir
    plan: Plan
    revision: str | None  # the applied revision
    configs: Mapping[str, SidecarConfig]  # sidecar name -> compiled config of that revision
    processes: Mapping[str, ProcessView]

    def records_of(self, service: str, version: str | None = None) -> list[SidecarRecord]:
        return [
            r for r in self.plan.sidecars
            if r.service == service and (version is None or r.version == version)
        ]

    def healthy(self, record: SidecarRecord) -> bool:
        names = [record.process] + ([record.app_process] if record.app_process else [])
        return all(n in self.processes and self.processes[n].ready for n in names)


class ConfigCache:
    """Compiled configs per revision, as the runtime stored them in compiled/<revision>/."""

    def __init__(self) -> None:
        self._by_revision: dict[str, dict[str, SidecarConfig]] = {}

    def get(self, state: StateDir, revision: str | None) -> dict[str, SidecarConfig]:
        if revision is None:
            return {}
        if revision not in self._by_revision:
            self._by_revision[revision] = load_configs(state.compiled(revision))
        return self._by_revision[revision]


def load_configs(directory: Path) -> dict[str, SidecarConfig]:
    """Every sidecar config a compile output's manifest lists; {} when there is none."""
    try:
        manifest = json.loads((directory / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return {}
    configs = {}
    for name in manifest.get("sidecars", {}) if isinstance(manifest, dict) else ():
        try:
            configs[name] = parse_sidecar_config((directory / sidecar_file(name)).read_bytes())
        except (OSError, ContractError):
            continue  # a partial or foreign output: draw what can be read
    return configs


def read_mesh(state: StateDir, cache: ConfigCache) -> MeshState:
    plan = load_plan(state)
    applied = read_applied(state)
    revision = applied.revision if applied else plan.revision
    return MeshState(state, plan, revision, cache.get(state, revision), read_processes(state))


def pss_kib(pid: int | None) -> int | None:
    """Proportional set size of a process (shared pages split among their users), in KiB."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None
