"""Istio request metrics per caller -> callee, from a sidecar's /metrics (or Prometheus).

`meshctl status` needs one total per sidecar (runtime/metrics.py); the graph needs the same
counters split by who called whom. Label names are Istio's: the ones our sidecars export now
(source_workload, source_version, destination_service_name, destination_version) and, as
fallbacks, the rest of Istio's standard set (canonical service/revision, app) so a sidecar
exporting either spelling draws the same edges.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from meshctl.runtime.metrics import DURATION, REQUESTS, quantile

UNKNOWN = "unknown"
# The service first: Istio's source_workload is the Deployment ("reviews-v1"); ours is the
# service name ("reviews", "gateway/public") until the sidecar reports the full set.
_SOURCE = ("source_canonical_service", "source_app", "source_workload")
_SOURCE_VERSION = ("source_version", "source_canonical_revision")
_DESTINATION = ("destination_service_name", "destination_canonical_service", "destination_app")
_DESTINATION_VERSION = ("destination_version", "destination_canonical_revision")
# Flags of a request the sidecar refused itself: access policy (RBAC), the outbound policy (NR).
DENIED_FLAGS = frozenset({"RBAC"})


@dataclass(frozen=True, order=True)
class EdgeKey:
    """One caller -> callee pair, as one sidecar reported it."""

    reporter: str  # "source" (the caller's sidecar) or "destination" (the callee's)
    source: str  # "frontend", "gateway/public", "unknown"
    source_version: str
    destination: str
    destination_version: str


@dataclass
class Counts:
    """Cumulative (or, after `delta`, windowed) counters of one edge."""

    requests: float = 0.0
    errors: float = 0.0  # 5xx answers
    denied: float = 0.0  # refused by access policy (403 RBAC)
    mtls: float = 0.0  # requests that arrived over verified mutual TLS
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count

    def add(self, other: Counts) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.denied += other.denied
        self.mtls += other.mtls
        for le, n in other.buckets.items():
            self.buckets[le] = self.buckets.get(le, 0.0) + n

    def quantile_ms(self, q: float) -> float | None:
        return quantile(q, self.buckets)


Series = dict[EdgeKey, Counts]


def _first(labels: Mapping[str, str], names: Iterable[str]) -> str:
    for name in names:
        value = labels.get(name)
        if value and value != UNKNOWN:
            return value
    return UNKNOWN


def _service_name(value: str) -> str:
    """Istio's destination_service is a host name (reviews.default.svc.cluster.local)."""
    return value.split(".", 1)[0]


def key_of(labels: Mapping[str, str]) -> EdgeKey:
    destination = _first(labels, _DESTINATION)
    if destination == UNKNOWN and labels.get("destination_service"):
        destination = _service_name(labels["destination_service"])
    return EdgeKey(
        reporter=labels.get("reporter", UNKNOWN),
        source=_first(labels, _SOURCE),
        source_version=_first(labels, _SOURCE_VERSION),
        destination=destination,
        destination_version=_first(labels, _DESTINATION_VERSION),
    )


def is_denied(labels: Mapping[str, str]) -> bool:
    flags = set(labels.get("response_flags", "-").split(","))
    return labels.get("response_code") == "403" and bool(flags & DENIED_FLAGS)


def is_probe(key: EdgeKey) -> bool:
    """A caller sidecar's health probe, as the callee counted it: from a mesh service but with
    no caller version (the sidecar sends it itself, not on behalf of an app)."""
    return (
        key.reporter == "destination" and key.source_version == UNKNOWN
        and key.source != UNKNOWN and not key.source.startswith(("gateway/", "gateway-"))
    )


def count_requests(out: Series, labels: Mapping[str, str], value: float) -> None:
    """Add one istio_requests_total sample to its edge."""
    counts = out.setdefault(key_of(labels), Counts())
    counts.requests += value
    if labels.get("response_code", "").startswith("5"):
        counts.errors += value
    if is_denied(labels):
        counts.denied += value
    if labels.get("connection_security_policy") == "mutual_tls":
        counts.mtls += value


def count_bucket(out: Series, labels: Mapping[str, str], value: float) -> None:
    """Add one duration histogram bucket sample to its edge."""
    counts = out.setdefault(key_of(labels), Counts())
    le = float(labels["le"])
    counts.buckets[le] = counts.buckets.get(le, 0.0) + value


def parse_series(text: str) -> Series:
    """Every istio_requests_total / duration series of one exposition, by edge."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        if family.name == REQUESTS:
            for s in family.samples:
                if s.name.endswith("_total"):
                    count_requests(out, s.labels, s.value)
        elif family.name == DURATION:
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    count_bucket(out, s.labels, s.value)
    return out


def delta(before: Series | None, after: Series) -> Series:
    """What one sidecar counted between two scrapes; a restarted sidecar counts from zero."""
    before = before or {}
    if any(after[k].requests < c.requests for k, c in before.items() if k in after):
        before = {}
    out: Series = {}
    for key, a in after.items():
        b = before.get(key, Counts())
        d = Counts(
            requests=a.requests - b.requests,
            errors=a.errors - b.errors,
            denied=a.denied - b.denied,
            mtls=a.mtls - b.mtls,
            buckets={le: n - b.buckets.get(le, 0.0) for le, n in a.buckets.items()},
        )
        if d.requests > 0:
            out[key] = d
    return out


def merge(parts: Iterable[Series]) -> Series:
    out: Series = {}
    for part in parts:
        for key, counts in part.items():
            out.setdefault(key, Counts()).add(counts)
    return out
