"""What the mesh's processes cost in memory, honestly: PSS, not RSS.

Forked sidecars share most of their pages with the fork server and with each other; RSS counts
every shared page in full in every process, PSS divides it among the processes that share it,
so PSS summed over processes is what the mesh really occupies. Read from
/proc/PID/smaps_rollup through psutil (`memory_full_info().pss`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import psutil

from meshctl.runtime.observed import Observed


def pss(pid: int | None) -> int | None:
    """Bytes of proportional set size of `pid`; None when it is gone or unreadable."""
    if pid is None or pid <= 0:
        return None
    with contextlib.suppress(psutil.Error, OSError, AttributeError):
        return int(psutil.Process(pid).memory_full_info().pss)
    return None


@dataclass(frozen=True)
class MeshMemory:
    by_process: dict[str, int] = field(default_factory=dict)  # process name -> PSS bytes
    sidecars: int = 0  # sidecars and gateways
    apps: int = 0
    forkserver: int | None = None
    sidecar_processes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.sidecars + self.apps + (self.forkserver or 0)


def mesh_memory(observed: Observed | None) -> MeshMemory:
    if observed is None:
        return MeshMemory()
    by_process: dict[str, int] = {}
    sidecars = apps = 0
    sidecar_names = []
    for name, record in observed.processes.items():
        value = pss(record.pid)
        if value is None:
            continue
        by_process[name] = value
        if record.role == "app":
            apps += value
        else:
            sidecars += value
            sidecar_names.append(name)
    server = pss(observed.forkserver.pid) if observed.forkserver is not None else None
    return MeshMemory(by_process=by_process, sidecars=sidecars, apps=apps, forkserver=server,
                      sidecar_processes=tuple(sidecar_names))


def mb(value: int | None) -> float | None:
    return None if value is None else round(value / 1e6, 1)
