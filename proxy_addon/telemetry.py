"""Metrics under Istio's standard names and labels, meshctl's own metrics, and the access log.

Istio dashboards, Kiali and Flagger read `istio_requests_total` and
`istio_request_duration_milliseconds` unchanged. Label children are cached: resolving
`labels()` on every request costs more than the increment itself.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, TextIO

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import generate_latest

ISTIO_LABELS = (
    "reporter",
    "source_workload",
    "source_version",
    "destination_service_name",
    "destination_version",
    "response_code",
    "response_flags",
    "connection_security_policy",
)
disable_created_metrics()  # `*_created` series double the exposition and nobody reads them

DURATION_BUCKETS_MS = (
    0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter(
            "istio_requests", "Requests handled by this sidecar", ISTIO_LABELS, registry=r
        )
        self.duration = Histogram(
            "istio_request_duration_milliseconds",
            "Request duration in milliseconds",
            ISTIO_LABELS,
            buckets=DURATION_BUCKETS_MS,
            registry=r,
        )
        self.retries = Counter(
            "meshctl_retries", "Retries sent upstream", ("destination_service_name",), registry=r
        )
        self.ejections = Counter(
            "meshctl_outlier_ejections",
            "Endpoints ejected by outlier detection",
            ("destination_service_name",),
            registry=r,
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
        self._children: dict[tuple[str, ...], tuple[Any, Any]] = {}
        self._revision: str | None = None

    def set_revision(self, revision: str) -> None:
        if self._revision is not None:
            self.revision.remove(self._revision)
        self.revision.labels(revision).set(1)
        self._revision = revision

    def observe(self, labels: tuple[str, ...], duration_ms: float) -> None:
        children = self._children.get(labels)
        if children is None:
            children = (self.requests.labels(*labels), self.duration.labels(*labels))
            self._children[labels] = children
        children[0].inc()
        children[1].observe(duration_ms)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class AccessLog:
    """One JSON line per request, written straight to a stream (not through `logging`).

    Lines are batched for up to FLUSH_S (or FLUSH_BYTES) so a busy sidecar makes one write
    per batch rather than one per request; `flush()` runs at shutdown.
    """

    FLUSH_S = 0.05
    FLUSH_BYTES = 64 * 1024

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.enabled = True
        self._pending: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def write(self, entry: dict[str, Any]) -> None:
        if not self.enabled:
            return
        entry["ts"] = round(time.time(), 3)
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        self._pending.append(line)
        self._size += len(line)
        if self._size >= self.FLUSH_BYTES:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self.FLUSH_S, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        data, self._pending, self._size = "".join(self._pending), [], 0
        try:
            self.stream.write(data)
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False  # stdout went away; keep serving
