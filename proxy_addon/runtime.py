"""Everything a running sidecar shares between flows: policy state, client pool, telemetry."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Coroutine
from typing import Any

from multidict import CIMultiDict

from meshctl.contract import RuntimeBindings, SidecarConfig
from proxy_addon.accesslog import AccessLog
from proxy_addon.edge import EdgeState
from proxy_addon.flowinfo import FlowInfo
from proxy_addon.h2client import H2Pool
from proxy_addon.labels import Labeller
from proxy_addon.origination import HostsResolver, OriginationContexts, version_of
from proxy_addon.samples import RecentRequests
from proxy_addon.state import PolicyState, Snapshot
from proxy_addon.telemetry import Metrics
from proxy_addon.tls import PeerTls, SidecarTls, TlsError, tls_for, upstream_tls
from proxy_addon.tracing import Spans
from proxy_addon.upstream import Upstream, UpstreamError

logger = logging.getLogger(__name__)

MAX_MIRRORS_IN_FLIGHT = 32
MIRROR_TIMEOUT_S = 5.0


class SidecarRuntime:
    def __init__(self, config: SidecarConfig, bindings: RuntimeBindings) -> None:
        self.state = PolicyState()
        self.metrics = Metrics()
        self.access_log = AccessLog()
        self.recent = RecentRequests()  # latencies of what this sidecar served, for promote
        self.spans = Spans(self.metrics.spans_exported.inc, self.metrics.spans_dropped.inc)
        self.labels = Labeller(config, bindings)
        # To other sidecars (mTLS per call, see peer_tls()) and to external services (TLS
        # origination); names the runtime bound in `RuntimeBindings.hosts` resolve first.
        self.upstream = Upstream(resolver=HostsResolver(lambda: self.snapshot.bindings.hosts))
        self.origination = OriginationContexts()
        self.edge = EdgeState()  # gateways: listeners, end-user tokens, client limits
        self.app_upstream = Upstream()  # the local app is always plain HTTP
        self.tls: SidecarTls | None = None
        self.h2 = H2Pool()  # HTTP/2 to other sidecars and gRPC apps (gRPC retries)
        self.h2_contexts: dict[int, ssl.SSLContext] = {}
        self._mirrors: set[asyncio.Task[None]] = set()
        self.install(config, bindings)

    @property
    def snapshot(self) -> Snapshot:
        snap = self.state.snapshot
        assert snap is not None
        return snap

    def install(self, config: SidecarConfig, bindings: RuntimeBindings) -> Snapshot:
        try:
            self.tls = tls_for(self.tls, bindings.tls)
        except TlsError as exc:  # files changed since they were checked: keep the last good
            logger.error("keeping the current certificates: %s", exc)
        snap = self.state.install(config, bindings)
        self.edge.install(config, bindings)
        self.metrics.set_revision(config.revision)
        self.metrics.prepare(config)
        self.labels = Labeller(config, bindings)
        t = config.telemetry
        self.access_log.configure(t.access_log, bindings.access_log, t.access_log_max_bytes,
                                  t.access_log_keep)
        w = self.labels.workload
        self.spans.configure(t.otlp_endpoint, (
            ("service.name", w.canonical_service), ("service.namespace", w.namespace),
            ("service.version", w.version), ("service.instance.id", bindings.instance),
            ("k8s.namespace.name", w.namespace), ("meshctl.workload", w.workload),
        ))
        return snap

    def peer_tls(self, snap: Snapshot, service: str, address: str) -> PeerTls | None:
        """mTLS settings for a call to `address` of `service`; None for plain HTTP."""
        dest = snap.destination(service)
        if dest is None:
            return None
        if dest.origination:
            version = version_of(snap.bindings.endpoints.get(service, {}), address)
            spec = dest.origination.get(version) if version is not None else None
            if spec is not None:
                return self.origination.peer(spec, address, service)
        return upstream_tls(
            self.tls, snap.config.mtls, dest.identity, address, snap.bindings.plaintext_endpoints
        )

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
        address = self.mirror_endpoint(info, service, version)
        if address is None:
            return
        copy = CIMultiDict(headers)
        copy["host"] = f"{service}-shadow"
        tls = self.peer_tls(info.snapshot, service, address)
        self.run_mirror(self._send_mirror(address, method, target, copy, body, tls))

    @staticmethod
    def mirror_endpoint(info: FlowInfo, service: str, version: str | None) -> str | None:
        """The endpoint a request's copy goes to: one of the mirror version's healthy ones,
        the same for every request of a trace."""
        endpoints = [e for e in info.snapshot.endpoints_for(service, version) if e.healthy]
        if not endpoints:
            return None
        return endpoints[hash(info.traceparent) % len(endpoints)].address

    def run_mirror(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run a mirror copy's send in the background: at most MAX_MIRRORS_IN_FLIGHT at once,
        past that the copy is dropped (and counted)."""
        if len(self._mirrors) >= MAX_MIRRORS_IN_FLIGHT:
            self.metrics.mirrors_dropped.inc()
            work.close()
            return False
        task = asyncio.create_task(work)
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)
        return True

    async def _send_mirror(
        self,
        address: str,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: bytes,
        tls: PeerTls | None,
    ) -> None:
        try:
            async with asyncio.timeout(MIRROR_TIMEOUT_S):
                await self.upstream.send(address, target, method, headers, body, tls=tls)
        except (UpstreamError, TimeoutError):
            pass  # a mirror's fate never reaches the caller

    async def close(self) -> None:
        for task in list(self._mirrors):
            task.cancel()
        await self.spans.close()
        await self.upstream.close()
        self.h2.close()
        await self.app_upstream.close()
        await self.edge.close()
