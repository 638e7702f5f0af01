"""Sampling the running mesh into a short in-memory history of counter steps.

Each tick a source returns cumulative counters (per sidecar from their admin /metrics, or the
mesh-wide sums from Prometheus); the history keeps the step between consecutive samples, so
the live window and every small time series are sums of steps, never a re-scrape.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from meshctl.dashboard.series import (
    Series,
    count_bucket,
    count_requests,
    delta,
    merge,
    parse_series,
)
from meshctl.runtime.plan import SidecarRecord
from meshctl.runtime.ports import HOST
from meshctl.runtime.probe import fetch

_REVISION = re.compile(r'^meshctl_config_revision_info\{[^}]*revision="([^"]+)"[^}]*\} 1(?:\.0)?$', re.M)
PROMETHEUS = "prometheus"  # the one pseudo-instance of a Prometheus sample


@dataclass(frozen=True)
class Scraped:
    """One sidecar at one moment: reachable at all, the revision it runs, its counters."""

    reachable: bool
    revision: str | None = None
    series: Series = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    at: float  # wall clock, for the page's time axis
    sidecars: dict[str, Scraped]  # instance (or PROMETHEUS) -> what it reported


@dataclass(frozen=True)
class Step:
    """What happened between two samples, per instance."""

    at: float
    seconds: float
    by_instance: dict[str, Series]

    @property
    def total(self) -> Series:
        return merge(self.by_instance.values())


class Source(Protocol):
    async def sample(self, records: list[SidecarRecord]) -> Sample: ...


class AdminSource:
    """The sidecars' own admin endpoints, as `meshctl status` reads them, all asked at once."""

    def __init__(self, timeout: float = 2.0) -> None:
        self.timeout = timeout

    async def _one(self, record: SidecarRecord) -> Scraped:
        text = await fetch(HOST, record.admin_port, "/metrics", timeout=self.timeout)
        if text is None:
            return Scraped(reachable=False)
        found = _REVISION.search(text)
        return Scraped(True, found.group(1) if found else None, parse_series(text))

    async def sample(self, records: list[SidecarRecord]) -> Sample:
        scraped = await asyncio.gather(*(self._one(r) for r in records))
        return Sample(time.time(), {r.instance: s for r, s in zip(records, scraped, strict=True)})


# Every spelling of the labels series.key_of reads, so either label set groups the same.
_BY = (
    "reporter,source_workload,source_canonical_service,source_app,source_version,"
    "source_canonical_revision,destination_service_name,destination_canonical_service,"
    "destination_app,destination_service,destination_version,destination_canonical_revision,"
    "response_code,response_flags,connection_security_policy"
)
REQUESTS_QUERY = f"sum by ({_BY}) (istio_requests_total)"
BUCKETS_QUERY = f"sum by ({_BY},le) (istio_request_duration_milliseconds_bucket)"


class PrometheusSource:
    """Mesh-wide counter sums from a Prometheus server that scrapes the sidecars.

    Revisions and reachability still come from each sidecar's admin endpoint: Prometheus only
    replaces the traffic numbers (and lags them by its scrape interval).
    """

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.admin = AdminSource()
        self.last_error: str | None = None

    async def _query(self, session: aiohttp.ClientSession, promql: str) -> list[dict[str, object]]:
        async with session.get(f"{self.url}/api/v1/query", params={"query": promql}) as resp:
            body = await resp.json(content_type=None)
        if body.get("status") != "success":
            raise ValueError(str(body.get("error", "query failed")))
        result: list[dict[str, object]] = body["data"]["result"]
        return result

    async def series(self) -> Series:
        out: Series = {}
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            requests = await self._query(session, REQUESTS_QUERY)
            buckets = await self._query(session, BUCKETS_QUERY)
        for row in requests:
            count_requests(out, _labels(row), _value(row))
        for row in buckets:
            count_bucket(out, _labels(row), _value(row))
        return out

    async def sample(self, records: list[SidecarRecord]) -> Sample:
        admin = await self.admin.sample(records)
        sidecars = {name: Scraped(s.reachable, s.revision) for name, s in admin.sidecars.items()}
        try:
            sidecars[PROMETHEUS] = Scraped(True, None, await self.series())
            self.last_error = None
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            self.last_error = f"{self.url}: {exc or type(exc).__name__}"
            sidecars[PROMETHEUS] = Scraped(False)
        return Sample(admin.at, sidecars)


def _labels(row: dict[str, object]) -> dict[str, str]:
    metric = row.get("metric")
    return {str(k): str(v) for k, v in metric.items()} if isinstance(metric, dict) else {}


def _value(row: dict[str, object]) -> float:
    value = row.get("value")
    return float(value[1]) if isinstance(value, list) and len(value) == 2 else 0.0


class History:
    """The last `keep_s` seconds of steps, and the latest sample."""

    def __init__(self, keep_s: float = 300.0, stale_s: float = 30.0) -> None:
        self.keep_s = keep_s
        self.stale_s = stale_s  # a sidecar away longer than this restarts its count
        self.latest: Sample | None = None
        self.steps: deque[Step] = deque()
        self.revisions: dict[str, str | None] = {}  # instance -> last revision it reported
        self._last: dict[str, tuple[float, Scraped]] = {}  # instance -> its last good scrape

    def add(self, sample: Sample) -> None:
        """A missed scrape (a slow sidecar on a busy machine) loses nothing: the next good one
        is counted against the last good one."""
        prev = self.latest
        self.latest = sample
        by_instance = {}
        for name, now in sample.sidecars.items():
            if not now.reachable:
                continue
            if now.revision is not None or name not in self.revisions:
                self.revisions[name] = now.revision
            last = self._last.get(name)
            self._last[name] = (sample.at, now)
            if last is not None and sample.at - last[0] <= self.stale_s:
                by_instance[name] = delta(last[1].series, now.series)
        if prev is None:
            return
        self.steps.append(Step(sample.at, max(sample.at - prev.at, 1e-6), by_instance))
        while self.steps and self.steps[0].at < sample.at - self.keep_s:
            self.steps.popleft()

    def window(self, seconds: float) -> tuple[float, dict[str, Series]]:
        """(seconds covered, per-instance counters) over the last `seconds`."""
        if not self.steps:
            return 0.0, {}
        end = self.steps[-1].at
        chosen = [s for s in self.steps if s.at > end - seconds] or [self.steps[-1]]
        covered = sum(s.seconds for s in chosen)
        by_instance: dict[str, Series] = {}
        for step in chosen:
            for name, series in step.by_instance.items():
                by_instance[name] = merge([by_instance.get(name, {}), series])
        return covered, by_instance

    def buckets(self, every_s: float) -> list[tuple[float, float, Series]]:
        """The history in slices of about `every_s` seconds: (end time, seconds, counters)."""
        out: list[tuple[float, float, Series]] = []
        group: list[Step] = []
        for step in self.steps:
            group.append(step)
            if sum(s.seconds for s in group) >= every_s * 0.99:
                out.append(_slice(group))
                group = []
        if group:
            out.append(_slice(group))
        return out


def _slice(steps: Iterable[Step]) -> tuple[float, float, Series]:
    items = list(steps)
    return items[-1].at, sum(s.seconds for s in items), merge(s.total for s in items)
