"""Each version's traffic over a window, from its own sidecars (or from Prometheus).

The inbound sidecars of a version report what it served (`reporter="destination"`): their
counters give requests and 5xx answers, their `/samples` endpoint the latencies themselves
(the analysis compares distributions, which histogram buckets are too coarse for). Two reads
make a window; a sidecar that restarted in between counts from zero.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from meshctl.errors import UsageError
from meshctl.promote.analysis import VersionSample
from meshctl.runtime.metrics import parse_snapshot
from meshctl.runtime.plan import SidecarRecord
from meshctl.runtime.ports import HOST
from meshctl.runtime.probe import fetch


@dataclass(frozen=True)
class Mark:
    """One sidecar's counters at a moment, and the sequence number of its latest sample."""

    requests: float
    errors: float
    seq: int


async def _mark(record: SidecarRecord) -> Mark | None:
    metrics = await fetch(HOST, record.admin_port, "/metrics", timeout=2.0)
    samples = await fetch(HOST, record.admin_port, "/samples?since=-1&limit=0", timeout=2.0)
    if metrics is None or samples is None:
        return None
    snap = parse_snapshot(metrics, time.monotonic(), ("destination",))
    return Mark(snap.requests, snap.errors, int(json.loads(samples)["seq"]))


async def _latencies(record: SidecarRecord, since: int) -> list[float]:
    text = await fetch(HOST, record.admin_port, f"/samples?since={since}", timeout=5.0)
    if text is None:
        return []
    return [float(ms) for ms, _status in json.loads(text)["samples"]]


class SidecarWindow:
    """Start with `open()`, end with `close()`: per version, what its sidecars served."""

    def __init__(self, records: Iterable[SidecarRecord], versions: Sequence[str]) -> None:
        self.records = [r for r in records if r.version in versions and not r.is_gateway]
        self.versions = list(versions)
        self._start: dict[str, Mark | None] = {}

    def open(self) -> None:
        self._start = asyncio.run(self._marks())

    async def _marks(self) -> dict[str, Mark | None]:
        marks = await asyncio.gather(*(_mark(r) for r in self.records))
        return {r.instance: m for r, m in zip(self.records, marks, strict=True)}

    def close(self) -> dict[str, VersionSample]:
        return asyncio.run(self._close())

    async def _close(self) -> dict[str, VersionSample]:
        end = await self._marks()
        counts = {v: [0.0, 0.0] for v in self.versions}
        latencies: dict[str, list[float]] = {v: [] for v in self.versions}
        reads = []
        for r in self.records:
            before, after = self._start.get(r.instance), end.get(r.instance)
            if after is None:
                continue
            if before is None or after.requests < before.requests:  # new or restarted
                before = Mark(0.0, 0.0, 0)
            assert r.version is not None
            counts[r.version][0] += after.requests - before.requests
            counts[r.version][1] += after.errors - before.errors
            reads.append((r.version, _latencies(r, before.seq)))
        for version, values in zip(
            [v for v, _ in reads], await asyncio.gather(*(c for _, c in reads)), strict=True
        ):
            latencies[version].extend(values)
        return {
            v: VersionSample(v, int(counts[v][0]), int(counts[v][1]), tuple(latencies[v]))
            for v in self.versions
        }


class PrometheusWindow:
    """The same numbers from a Prometheus server that scrapes the mesh (`--prometheus URL`).

    Counts come from `increase(istio_requests_total[...])`; latencies are the bucket bounds of
    `istio_request_duration_milliseconds`, each repeated by its count (coarser than the
    sidecars' own samples, so a small slowdown may go unseen: the output says which was used).
    """

    def __init__(self, url: str, service: str, versions: Sequence[str]) -> None:
        self.url = url.rstrip("/")
        self.service = service
        self.versions = list(versions)
        self._opened = 0.0

    def open(self) -> None:
        self._opened = time.time()

    def _query(self, promql: str) -> list[dict[str, object]]:
        query = urllib.parse.urlencode({"query": promql, "time": f"{time.time():.3f}"})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=10) as resp:
                body = json.load(resp)
        except (OSError, ValueError) as exc:  # unreachable, refused, not JSON
            raise UsageError(f"cannot query Prometheus at {self.url}: {exc}") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else body
            raise UsageError(f"Prometheus at {self.url} refused a query: {error}")
        result: list[dict[str, object]] = body["data"]["result"]
        return result

    def close(self) -> dict[str, VersionSample]:
        seconds = max(int(time.time() - self._opened), 1)
        selector = (
            f'reporter="destination",destination_service_name="{self.service}"'
        )
        by = "destination_version"
        total = self._query(f"sum by ({by}) (increase(istio_requests_total{{{selector}}}[{seconds}s]))")
        errors = self._query(
            f'sum by ({by}) (increase(istio_requests_total{{{selector},response_code=~"5.."}}[{seconds}s]))'
        )
        buckets = self._query(
            f"sum by ({by}, le) (increase(istio_request_duration_milliseconds_bucket{{{selector}}}[{seconds}s]))"
        )

        def per_version(rows: list[dict[str, object]]) -> dict[str, float]:
            out: dict[str, float] = {}
            for row in rows:
                metric = row["metric"]
                value = row["value"]
                assert isinstance(metric, dict) and isinstance(value, list)
                out[str(metric.get(by))] = float(value[1])
            return out

        totals, fails = per_version(total), per_version(errors)
        samples: dict[str, list[float]] = {v: [] for v in self.versions}
        cumulative: dict[str, list[tuple[float, float]]] = {v: [] for v in self.versions}
        for row in buckets:
            metric, value = row["metric"], row["value"]
            assert isinstance(metric, dict) and isinstance(value, list)
            version = str(metric.get(by))
            if version in cumulative:
                cumulative[version].append((float(str(metric["le"])), float(value[1])))
        for version, points in cumulative.items():
            prev = 0.0
            last_finite = 0.0
            for le, count in sorted(points):
                bound = last_finite if le == float("inf") else le
                samples[version].extend([bound] * max(int(round(count - prev)), 0))
                prev = count
                if le != float("inf"):
                    last_finite = le
        return {
            v: VersionSample(v, int(round(totals.get(v, 0.0))), int(round(fails.get(v, 0.0))),
                             tuple(samples[v]))
            for v in self.versions
        }
