"""Everything a running sidecar shares between flows: policy state, client pool, telemetry."""

from __future__ import annotations

import asyncio
import logging

from multidict import CIMultiDict

from meshctl.contract import RuntimeBindings, SidecarConfig
from proxy_addon.flowinfo import FlowInfo
from proxy_addon.state import PolicyState, Snapshot
from proxy_addon.telemetry import AccessLog, Metrics
from proxy_addon.upstream import Upstream, UpstreamError

logger = logging.getLogger(__name__)

MAX_MIRRORS_IN_FLIGHT = 32
MIRROR_TIMEOUT_S = 5.0


class SidecarRuntime:
    def __init__(self, config: SidecarConfig, bindings: RuntimeBindings) -> None:
        self.state = PolicyState()
        self.metrics = Metrics()
        self.access_log = AccessLog()
        self.upstream = Upstream()  # the TLS seam: proxy_addon.tls supplies an SSL context
        self.app_upstream = Upstream()  # the local app is always plain HTTP
        self._mirrors: set[asyncio.Task[None]] = set()
        self.install(config, bindings)

    @property
    def snapshot(self) -> Snapshot:
        snap = self.state.snapshot
        assert snap is not None
        return snap

    def install(self, config: SidecarConfig, bindings: RuntimeBindings) -> Snapshot:
        snap = self.state.install(config, bindings)
        self.metrics.set_revision(config.revision)
        self.access_log.enabled = config.telemetry.access_log == "json"
        return snap

    def mirror(
        self,
        info: FlowInfo,
        service: str,
        version: str | None,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: bytes,
    ) -> None:
        """Send a copy and forget it: bounded in number, never awaited by the request."""
        if len(self._mirrors) >= MAX_MIRRORS_IN_FLIGHT:
            self.metrics.mirrors_dropped.inc()
            return
        endpoints = [e for e in info.snapshot.endpoints_for(service, version) if e.healthy]
        if not endpoints:
            return
        address = endpoints[hash(info.traceparent) % len(endpoints)].address
        copy = CIMultiDict(headers)
        copy["host"] = f"{service}-shadow"
        task = asyncio.create_task(self._send_mirror(address, method, target, copy, body))
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    async def _send_mirror(
        self, address: str, method: str, target: str, headers: CIMultiDict[str], body: bytes
    ) -> None:
        try:
            async with asyncio.timeout(MIRROR_TIMEOUT_S):
                await self.upstream.send(address, target, method, headers, body)
        except (UpstreamError, TimeoutError):
            pass  # a mirror's fate never reaches the caller

    async def close(self) -> None:
        for task in list(self._mirrors):
            task.cancel()
        await self.upstream.close()
        await self.app_upstream.close()
