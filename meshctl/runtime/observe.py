"""What the running mesh looks like: per sidecar its revision, health and traffic over a window.

Used by `meshctl status` and by rollout (revision confirmation, the gate). Sidecars are asked
concurrently: 50 sidecars take one round trip, not fifty.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from meshctl.runtime.control import ProcessView, views_of
from meshctl.runtime.endpoints import EndpointView, endpoint_views
from meshctl.runtime.metrics import Snapshot, Window, parse_snapshot, window
from meshctl.runtime.observed import read_observed
from meshctl.runtime.plan import Plan, SidecarRecord
from meshctl.runtime.ports import HOST
from meshctl.runtime.probe import ask_all, fetch, fetch_revision
from meshctl.runtime.state import StateDir


def running_revisions(records: Iterable[SidecarRecord]) -> dict[str, str | None]:
    answers = ask_all(records, lambda r: fetch_revision(HOST, r.admin_port, 2.0))
    return {r.instance: rev for r, rev in answers}


def reporters_for(record: SidecarRecord) -> tuple[str, ...]:
    """A service sidecar's own traffic is what it serves; a gateway's is what it sends."""
    return ("source",) if record.is_gateway else ("destination",)


def scrape(
    records: Iterable[SidecarRecord], *, all_reporters: bool = False
) -> dict[str, Snapshot | None]:
    """One /metrics snapshot of each sidecar, all asked at once."""

    async def one(record: SidecarRecord) -> Snapshot | None:
        text = await fetch(HOST, record.admin_port, "/metrics", timeout=2.0)
        if text is None:
            return None
        reporters = None if all_reporters else reporters_for(record)
        return parse_snapshot(text, time.monotonic(), reporters)

    return {r.instance: snap for r, snap in ask_all(records, one)}


@dataclass(frozen=True)
class SidecarStatus:
    record: SidecarRecord
    revision: str | None
    healthy: bool
    restarts: int
    status: str
    traffic: Window | None
    # how its callers' sidecars see this instance (None: every caller finds it healthy)
    callers: EndpointView | None = None


def observe(state: StateDir, plan: Plan, interval: float = 1.0) -> list[SidecarStatus]:
    """Scrape every sidecar twice, `interval` seconds apart, and join with process state."""
    records = plan.sidecars
    before = scrape(records)
    if interval > 0:
        time.sleep(interval)
    after = scrape(records)
    revisions = running_revisions(records)
    procs = views_of(read_observed(state, required=True))
    callers = endpoint_views(records)
    out = []
    for r in records:
        b, a = before.get(r.instance), after.get(r.instance)
        if interval <= 0 and a is not None:
            b = Snapshot(at=a.at)  # cumulative since the sidecar started: no rate
        traffic = window(b, a) if a is not None and b is not None else None
        out.append(
            SidecarStatus(
                record=r,
                revision=revisions.get(r.instance),
                healthy=_healthy(r, procs) and a is not None,
                restarts=_restarts(r, procs),
                status=_status(r, procs),
                traffic=traffic,
                callers=callers.get(r.instance),
            )
        )
    return out


def _healthy(r: SidecarRecord, procs: dict[str, ProcessView]) -> bool:
    names = [r.process] + ([r.app_process] if r.app_process else [])
    return all(procs.get(n) is not None and procs[n].ready for n in names)


def _restarts(r: SidecarRecord, procs: dict[str, ProcessView]) -> int:
    names = [r.process] + ([r.app_process] if r.app_process else [])
    return sum(procs[n].restarts for n in names if n in procs)


def _status(r: SidecarRecord, procs: dict[str, ProcessView]) -> str:
    """'ready', or what is wrong: 'app backoff', 'sidecar starting', ..."""
    parts = []
    for role, name in (("app", r.app_process), ("sidecar", r.process)):
        if name is None:
            continue
        view = procs.get(name)
        if view is None:
            parts.append(f"{role} not started")
        elif not view.ready:
            parts.append(f"{role} {view.status}")
    return ", ".join(parts) or "ready"
