"""Metrics under Istio's standard names and full label set, and meshctl's own metrics.

Istio dashboards, Kiali and Flagger read `istio_requests_total`,
`istio_request_duration_milliseconds`, `istio_request_bytes` and `istio_response_bytes`
unchanged (the label values come from `proxy_addon.labels`). Label children are cached:
resolving `labels()` on every request costs more than the increments themselves.
Health probes are never requests here: they count in `meshctl_health_checks_total`.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import generate_latest

from meshctl.contract import SidecarConfig
from proxy_addon.labels import ISTIO_LABELS, TCP_LABELS

disable_created_metrics()  # `*_created` series double the exposition and nobody reads them

# Istio's buckets: milliseconds, and bytes in powers of ten.
DURATION_BUCKETS_MS = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
    600000, 1800000, 3600000,
)
SIZE_BUCKETS = (1, 10, 100, 1000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)
HEALTH_RESULTS = ("success", "failure")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter("istio_requests", "Requests handled by this sidecar", ISTIO_LABELS,
                                registry=r)
        self.duration = Histogram(
            "istio_request_duration_milliseconds", "Request duration in milliseconds",
            ISTIO_LABELS, buckets=DURATION_BUCKETS_MS, registry=r,
        )
        self.request_bytes = Histogram("istio_request_bytes", "Request sizes (headers and body)",
                                       ISTIO_LABELS, buckets=SIZE_BUCKETS, registry=r)
        self.response_bytes = Histogram("istio_response_bytes", "Response sizes (headers and body)",
                                        ISTIO_LABELS, buckets=SIZE_BUCKETS, registry=r)
        self.tcp_sent = Counter("istio_tcp_sent_bytes", "Bytes sent to the peer of a TCP connection",
                                TCP_LABELS, registry=r)
        self.tcp_received = Counter("istio_tcp_received_bytes",
                                    "Bytes received from the peer of a TCP connection", TCP_LABELS,
                                    registry=r)
        self.tcp_opened = Counter("istio_tcp_connections_opened", "TCP connections opened",
                                  TCP_LABELS, registry=r)
        self.tcp_closed = Counter("istio_tcp_connections_closed", "TCP connections closed",
                                  TCP_LABELS, registry=r)
        self.retries = Counter(
            "meshctl_retries", "Retries sent upstream", ("destination_service_name",), registry=r
        )
        self.ejections = Counter(
            "meshctl_outlier_ejections",
            "Endpoints ejected by outlier detection",
            ("destination_service_name",),
            registry=r,
        )
        self.health_checks = Counter(
            "meshctl_health_checks", "Active health probes sent, by result",
            ("destination_service_name", "destination_version", "result"), registry=r,
        )
        self.revision = Gauge(
            "meshctl_config_revision_info",
            "The running config revision (value 1)",
            ("revision",),
            registry=r,
        )
        self.reloads = Counter("meshctl_config_reloads", "Configs applied by reload", registry=r)
        self.reload_failures = Counter(
            "meshctl_config_reload_failures", "Config files refused on reload", registry=r
        )
        self.in_flight = Gauge(
            "meshctl_requests_in_flight", "Requests being handled", registry=r
        )
        self.mirrors_dropped = Counter(
            "meshctl_mirror_dropped", "Mirror copies not sent (too many in flight)", registry=r
        )
        self.spans_exported = Counter("meshctl_spans_exported", "Spans accepted by the collector",
                                      registry=r)
        self.spans_dropped = Counter(
            "meshctl_spans_dropped", "Spans not exported (queue full, collector slow or down)",
            registry=r,
        )
        self._children: dict[tuple[str, ...], tuple[Any, Any, Any, Any]] = {}
        self._revision: str | None = None

    def set_revision(self, revision: str) -> None:
        if self._revision is not None:
            self.revision.remove(self._revision)
        self.revision.labels(revision).set(1)
        self._revision = revision

    def prepare(self, config: SidecarConfig) -> None:
        """Create meshctl's per-destination counters at zero, so a rate() has a start."""
        for service, dest in config.destinations.items():
            self.retries.labels(service)
            self.ejections.labels(service)
            if dest.traffic_policy.health_check is not None:
                for version in dest.versions:
                    for result in HEALTH_RESULTS:
                        self.health_checks.labels(service, version, result)

    def observe(
        self, labels: tuple[str, ...], duration_ms: float, request_bytes: int, response_bytes: int
    ) -> None:
        children = self._children.get(labels)
        if children is None:
            children = (
                self.requests.labels(*labels), self.duration.labels(*labels),
                self.request_bytes.labels(*labels), self.response_bytes.labels(*labels),
            )
            self._children[labels] = children
        children[0].inc()
        children[1].observe(duration_ms)
        children[2].observe(request_bytes)
        children[3].observe(response_bytes)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
