"""Active health checks: probe each endpoint of a destination that has a `healthCheck`.

An endpoint turns unhealthy after `unhealthy_threshold` failed probes in a row and healthy
again after `healthy_threshold` good ones; the load balancer skips unhealthy endpoints.
Probes go where requests go (the endpoint's inbound sidecar, with mTLS when on), with the
service name as Host. The loop reads the current snapshot each round, so reloads apply.
"""

from __future__ import annotations

import asyncio
import logging
import time

from multidict import CIMultiDict

from meshctl.contract import CompiledHealthCheck
from proxy_addon.endpoints import Endpoint
from proxy_addon.runtime import SidecarRuntime
from proxy_addon.upstream import UpstreamError

logger = logging.getLogger(__name__)
TICK_S = 0.1


def record_probe(ep: Endpoint, ok: bool, check: CompiledHealthCheck) -> bool:
    """Count one probe result; return True when the endpoint's health changed.

    A passing probe also ends an outlier ejection (Envoy's successful_active_health_check_
    uneject_host): an app back after a crash takes traffic at the next probe, not after
    baseEjectionTime."""
    if ok:
        ep.hc_failures = 0
        if ep.ejected_until > 0.0:
            ep.ejected_until = 0.0
            ep.consecutive_5xx = 0
            return True
        ep.hc_successes += 1
        if not ep.healthy and ep.hc_successes >= check.healthy_threshold:
            ep.healthy = True
            return True
    else:
        ep.hc_successes = 0
        ep.hc_failures += 1
        if ep.healthy and ep.hc_failures >= check.unhealthy_threshold:
            ep.healthy = False
            return True
    return False


class HealthChecker:
    def __init__(self, rt: SidecarRuntime) -> None:
        self.rt = rt
        self._due: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="meshctl health checks")

    def stop(self) -> None:
        for task in [self._task, *self._probes]:
            if task is not None:
                task.cancel()

    async def _run(self) -> None:
        while True:
            self.tick(time.monotonic())
            await asyncio.sleep(TICK_S)

    def tick(self, now: float) -> None:
        snap = self.rt.snapshot
        for service, dest in snap.config.destinations.items():
            check = dest.traffic_policy.health_check
            if check is None or self._due.get(service, 0.0) > now:
                continue
            self._due[service] = now + check.interval_ms / 1000.0
            for ep in snap.endpoints_for(service, None):
                task = asyncio.create_task(self._probe(service, ep, check))
                self._probes.add(task)
                task.add_done_callback(self._probes.discard)

    async def _probe(self, service: str, ep: Endpoint, check: CompiledHealthCheck) -> None:
        snap = self.rt.snapshot
        # The header tells the endpoint's sidecar this is a probe, not traffic (never counted).
        headers: CIMultiDict[str] = CIMultiDict(
            host=service, **{"user-agent": "meshctl-health", "x-mesh-health-check": "1"})
        try:
            async with asyncio.timeout(check.timeout_ms / 1000.0):
                tls = self.rt.peer_tls(snap, service, ep.address)
                result = await self.rt.upstream.send(
                    ep.address, check.path, "GET", headers, None, tls=tls
                )
            ok = 200 <= result.status < 300
        except (UpstreamError, TimeoutError):
            ok = False
        self.rt.metrics.health_checks.labels(service, ep.version, "success" if ok else "failure").inc()
        if record_probe(ep, ok, check):
            state = "healthy" if ep.healthy else "unhealthy"
            logger.warning("an endpoint of %s is now %s (active health check)", service, state)
