"""The rollout gate: error rate and p99 of the updated sidecars over a window.

Counted over all the traffic of those sidecars (what they serve and what they send), as
Flagger's request-success-rate and request-duration checks: the p99 is that of their summed
histograms (`metrics.pooled`). A window without any request
passes: there is nothing to judge, and a local mesh often sits idle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from meshctl import defaults
from meshctl.runtime.metrics import Snapshot, Window, pooled, window
from meshctl.runtime.observe import scrape
from meshctl.runtime.plan import SidecarRecord

EARLY_FAIL_MIN_REQUESTS = 20  # enough requests to stop a window early on errors


@dataclass(frozen=True)
class GateSpec:
    window_ms: int = defaults.GATE_WINDOW_MS
    max_error_rate: float = defaults.GATE_MAX_ERROR_RATE  # percent
    max_p99_ms: int = defaults.GATE_MAX_P99_MS


@dataclass(frozen=True)
class GateResult:
    ok: bool
    traffic: Window
    reason: str

    def summary(self) -> str:
        t = self.traffic
        p99 = "-" if t.p99_ms is None else f"{t.p99_ms:.0f}ms"
        return (
            f"{int(t.requests)} requests, error rate {t.error_rate:.2f}%, p99 {p99}"
            + (f": {self.reason}" if self.reason else "")
        )


def judge(spec: GateSpec, traffic: Window, final: bool) -> GateResult | None:
    """A verdict, or None to keep watching (only errors can end a window early)."""
    if traffic.requests and traffic.error_rate > spec.max_error_rate:
        if final or traffic.requests >= EARLY_FAIL_MIN_REQUESTS:
            return GateResult(
                False, traffic,
                f"error rate {traffic.error_rate:.2f}% is over {spec.max_error_rate:g}%",
            )
    if not final:
        return None
    if traffic.p99_ms is not None and traffic.p99_ms > spec.max_p99_ms:
        return GateResult(False, traffic, f"p99 {traffic.p99_ms:.0f}ms is over {spec.max_p99_ms}ms")
    if not traffic.requests:
        return GateResult(True, traffic, "no traffic in the window")
    return GateResult(True, traffic, "")


def watch(
    spec: GateSpec,
    records: list[SidecarRecord],
    *,
    tick: float = 1.0,
    progress: Callable[[str], None] | None = None,
    on_tick: Callable[[Window], None] | None = None,
) -> GateResult:
    """Scrape at the start, then every `tick`, until the window ends or errors fail it."""
    start = time.monotonic()
    before = scrape(records, all_reporters=True)
    deadline = start + spec.window_ms / 1000
    while True:
        now = time.monotonic()
        final = now >= deadline
        if not final:
            time.sleep(min(tick, deadline - now))
            final = time.monotonic() >= deadline
        after = scrape(records, all_reporters=True)
        traffic = pooled(_windows(before, after), time.monotonic() - start)
        verdict = judge(spec, traffic, final)
        if on_tick:
            on_tick(traffic)
        if verdict is not None:
            return verdict
        if progress:
            progress(f"  gate: {int(traffic.requests)} requests, {traffic.error_rate:.2f}% errors")


def _windows(before: dict[str, Snapshot | None], after: dict[str, Snapshot | None]) -> list[Window]:
    out = []
    for name, a in after.items():
        b = before.get(name)
        if a is None:
            continue
        out.append(window(b if b is not None else Snapshot(at=a.at), a))
    return out
