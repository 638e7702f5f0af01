"""Several sidecars' latencies are pooled as Flagger pools them: a real Prometheus runs
Flagger's request-duration check (verbatim, tests/telemetry/upstream_queries.json) over two
targets serving the sidecar's own histogram, and `meshctl.runtime.metrics.pooled` — what the
rollout gate and the per-version rows of `meshctl status` use — gives the same p99 from the
same exposition text. The worst instance's p99 does not.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from meshctl.runtime.metrics import Window, parse_snapshot, pooled, window
from proxy_addon.telemetry import DURATION_BUCKETS_MS
from tests.runtime.helpers import wait_until
from tests.telemetry.prom import Prometheus, flagger

pytestmark = pytest.mark.slow

LABELS = {"reporter": "destination", "destination_workload_namespace": "shop",
          "destination_workload": "reviews-v2"}


class Target:
    """/metrics of one instance: each scrape first records one more batch of latencies, so
    every counter grows by the same amount per scrape (a steady rate)."""

    def __init__(self, batch_ms: list[float]) -> None:
        self.registry = CollectorRegistry()
        self.histogram = Histogram("istio_request_duration_milliseconds", "request duration",
                                   list(LABELS), buckets=DURATION_BUCKETS_MS, registry=self.registry)
        self.requests = Counter("istio_requests", "requests", [*LABELS, "response_code"],
                                registry=self.registry)
        self.batch_ms = batch_ms
        self.texts: list[str] = []
        self.lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = target.scrape()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def scrape(self) -> bytes:
        with self.lock:
            for ms in self.batch_ms:
                self.histogram.labels(**LABELS).observe(ms)
                self.requests.labels(**LABELS, response_code="200").inc()
            text = generate_latest(self.registry)
            self.texts.append(text.decode())
            return text

    def last_window(self) -> Window:
        with self.lock:
            before, after = self.texts[-2:]
        return window(parse_snapshot(before, at=0.0), parse_snapshot(after, at=1.0))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def targets() -> Iterator[tuple[Target, Target]]:
    # One instance served 10 requests a scrape, one of them slow (900 ms); the other served
    # 990, all fast. Of the version's 1,000 requests a scrape, one was slow: its p99 is fast.
    slow = Target([3.0] * 9 + [900.0])
    fast = Target([3.0] * 990)
    yield slow, fast
    slow.close()
    fast.close()


def test_pooled_p99_is_flaggers_request_duration(targets: tuple[Target, Target], tmp_path: Path) -> None:
    slow, fast = targets
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: sidecars\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{slow.port}', '127.0.0.1:{fast.port}']}}]\n"
    )
    prometheus = Prometheus(config, tmp_path)
    query = flagger("request-duration", namespace="shop", target="reviews-v2", interval="10s")
    try:
        def flagger_p99() -> float | None:
            result = prometheus.query(query)
            value = float(result[0]["value"][1]) if len(result) == 1 else math.nan
            return None if math.isnan(value) else value

        # a rate needs two scrapes of each target in the interval
        wait_until(lambda: flagger_p99() is not None and min(len(slow.texts), len(fast.texts)) >= 4,
                   timeout=60, what="Prometheus' rates of both targets")
        theirs = flagger_p99()
        assert theirs is not None
        ours = pooled([slow.last_window(), fast.last_window()], 1.0)
    finally:
        prometheus.stop()

    assert ours.requests == 1000
    assert ours.p99_ms == pytest.approx(theirs, rel=0.01), (ours.p99_ms, theirs)
    assert ours.p99_ms is not None and ours.p99_ms < 5.0  # in the (1, 5] ms bucket
    # Taking the worst instance's p99 instead would fail a healthy version: 900 ms territory.
    worst = max(w.p99_ms or 0.0 for w in (slow.last_window(), fast.last_window()))
    assert worst > 100 * theirs
