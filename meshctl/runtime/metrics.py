"""Reading a sidecar's /metrics: request counts, 5xx share and latency quantiles over a window.

Two scrapes make a window; the numbers are the differences between them, as Prometheus'
`rate()` and `histogram_quantile()` would compute them (linear interpolation in a bucket).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "istio_requests"  # the parser drops the counter's _total suffix from family names
DURATION = "istio_request_duration_milliseconds"


@dataclass
class Snapshot:
    """Cumulative counters of one sidecar at one moment."""

    at: float
    requests: float = 0.0
    errors: float = 0.0  # responses with a 5xx status
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    revision: str | None = None


def parse_snapshot(text: str, at: float, reporters: Iterable[str] | None = None) -> Snapshot:
    """Sum the Istio metrics over label sets; `reporters` keeps only those (source/destination)."""
    keep = set(reporters) if reporters is not None else None
    snap = Snapshot(at=at)
    for family in text_string_to_metric_families(text):
        if family.name == REQUESTS:
            for s in family.samples:
                if not s.name.endswith("_total"):
                    continue
                if keep is not None and s.labels.get("reporter") not in keep:
                    continue
                snap.requests += s.value
                if s.labels.get("response_code", "").startswith("5"):
                    snap.errors += s.value
        elif family.name == DURATION:
            for s in family.samples:
                if not s.name.endswith("_bucket"):
                    continue
                if keep is not None and s.labels.get("reporter") not in keep:
                    continue
                le = float(s.labels["le"])
                snap.buckets[le] = snap.buckets.get(le, 0.0) + s.value
        elif family.name == "meshctl_config_revision_info":
            for s in family.samples:
                if s.value == 1:
                    snap.revision = s.labels.get("revision")
    return snap


@dataclass(frozen=True)
class Window:
    seconds: float
    requests: float
    errors: float
    p50_ms: float | None
    p99_ms: float | None
    # The latency histogram of the window (le -> requests at or under it, cumulative): what
    # `pooled` sums to take the quantiles of several sidecars together.
    buckets: Mapping[float, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_rate(self) -> float:
        """Percent of requests answered 5xx (0 when there were none)."""
        return 100.0 * self.errors / self.requests if self.requests else 0.0


def window(before: Snapshot, after: Snapshot) -> Window:
    """What happened between two snapshots (a restarted sidecar counts from zero)."""
    reset = after.requests < before.requests
    base = Snapshot(at=before.at) if reset else before
    buckets = {le: after.buckets.get(le, 0.0) - base.buckets.get(le, 0.0) for le in after.buckets}
    return Window(
        seconds=max(after.at - before.at, 0.0),
        requests=after.requests - base.requests,
        errors=after.errors - base.errors,
        p50_ms=quantile(0.50, buckets),
        p99_ms=quantile(0.99, buckets),
        buckets=buckets,
    )


def pooled(windows: Iterable[Window], seconds: float) -> Window:
    """Several sidecars' windows as one: counts summed, quantiles of the summed histograms, as
    `histogram_quantile(0.99, sum by (le) (rate(..._bucket[w])))` in Flagger's
    request-duration check and Istio's dashboards (not the worst sidecar's p99: one slow
    request on an instance that served ten would stand for all of them)."""
    listed = list(windows)
    buckets: dict[float, float] = {}
    for w in listed:
        for le, count in w.buckets.items():
            buckets[le] = buckets.get(le, 0.0) + count
    return Window(
        seconds=seconds,
        requests=sum(w.requests for w in listed),
        errors=sum(w.errors for w in listed),
        p50_ms=quantile(0.50, buckets),
        p99_ms=quantile(0.99, buckets),
        buckets=buckets,
    )


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """histogram_quantile(q) over cumulative buckets; None when the histogram is empty."""
    ordered = sorted(buckets.items())
    if not ordered:
        return None
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return prev_le  # as Prometheus: the highest finite bound
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le
