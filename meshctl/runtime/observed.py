"""state.json: what the supervisor observes of each process, for `status`, `up` and `apply`.

Only the supervisor writes it (every change, atomically); everyone else reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshctl.runtime.state import Record, StateDir, read_record, write_record

STATE_VERSION = "meshctl.dev/state/processes/v1"


@dataclass(frozen=True)
class ProcessRecord:
    role: str
    pid: int | None
    status: str  # starting | ready | unready | backoff | stopping | stopped
    ready: bool
    restarts: int = 0
    last_exit: int | None = None
    started_at: float = 0.0
    since: float = 0.0
    forked: bool = False  # forked from the fork server (else exec'd)


@dataclass(frozen=True)
class SupervisorRecord:
    pid: int | None
    stopped: bool


@dataclass(frozen=True)
class ForkServerRecord:
    pid: int | None
    status: str  # starting | ready | backoff | stopped | failed
    restarts: int = 0
    forks: int = 0  # sidecars it forked


@dataclass(frozen=True)
class Observed:
    supervisor: SupervisorRecord
    plan_digest: str = ""
    retiring: tuple[str, ...] = ()
    updated: float = 0.0
    processes: dict[str, ProcessRecord] = field(default_factory=dict)
    forkserver: ForkServerRecord | None = None  # None: sidecars are exec'd


OBSERVED = Record(
    "state.json", STATE_VERSION, Observed,
    "the supervisor rewrites it on every change while it runs; if it stays damaged, run "
    "`meshctl down` and then `meshctl up`",
)


def read_observed(state: StateDir, *, required: bool = False) -> Observed | None:
    value: Observed | None = read_record(state.state, OBSERVED, required=required)
    return value


def write_observed(state: StateDir, observed: Observed) -> None:
    write_record(state.state, OBSERVED, observed)
