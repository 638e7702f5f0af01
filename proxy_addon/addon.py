"""The mitmproxy addon: sorts each flow by listener and hands it to its handler.

Hooks used: `requestheaders` (snapshot the policy, route streaming requests), `request`
(answer every buffered request with the pooled client), `responseheaders` (stream what
mitmproxy carries), `response`/`error` (telemetry and access log), `http_connect`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from mitmproxy import http
from mitmproxy.proxy import server_hooks

from meshctl.decision import decide
from meshctl.decision.decide import is_grpc
from proxy_addon import grpcflow, h2c, reporting
from proxy_addon.flowinfo import KEY, FlowInfo, header_dict, wants_stream
from proxy_addon.gateway import serve_gateway
from proxy_addon.inbound import serve_inbound
from proxy_addon.labels import BLACKHOLE, PASSTHROUGH
from proxy_addon.limits import malformed_fields, malformed_method, malformed_target
from proxy_addon.outbound import outbound_request, serve_decision
from proxy_addon.responses import answer_response, client_wants_close, flag_response
from proxy_addon.runtime import SidecarRuntime
from proxy_addon.streaming import route_stream, stream_instead
from proxy_addon.tcp import TcpTunnels
from proxy_addon.tracing import new_request_id
from proxy_addon.upstream import StreamInstead

logger = logging.getLogger(__name__)



class MeshAddon:
    def __init__(
        self,
        rt: SidecarRuntime,
        roles: dict[str, str],
        on_running: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.rt = rt
        self.roles = roles  # listener full_spec -> outbound | inbound | gateway
        self.in_flight = 0
        self.draining = False
        self._on_running = on_running
        self.tcp: TcpTunnels | None = None  # set by the server when it loads the tcp addon
        self._tasks: set[asyncio.Task[None]] = set()
        self.upstreams = grpcflow.Upstreams()  # live upstream connections, for gRPC calls

    def running(self) -> None:
        """Listeners are up. Synchronous, as mitmproxy needs: the startup work runs as a task."""
        if self._on_running is not None:
            task = asyncio.get_running_loop().create_task(self._on_running())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # --- flow start ------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Synchronous, except for gRPC calls (their faults and circuit breaker may wait)."""
        role = self.roles.get(flow.client_conn.proxy_mode.full_spec)
        if role is None:
            return None
        snap = self.rt.snapshot
        info = FlowInfo(role, snap)
        flow.metadata[KEY] = info
        self.in_flight += 1
        if role == "inbound":
            info.service = snap.config.inbound.service if snap.config.inbound else snap.config.name
            info.version = snap.bindings.version or "unknown"
        else:
            info.source_workload = (
                snap.config.name if snap.config.kind == "service" else f"gateway/{snap.config.name}"
            )
            info.source_version = snap.bindings.version or "unknown"
        req = flow.request.data
        if malformed_fields(req.headers.fields) or malformed_method(req.method) or malformed_target(req.path):
            info.flags.append("DPE")
            flow.response = flag_response(400, info.flags, close=True)
            return None
        info.headers = header_dict(flow.request)
        if "x-request-id" not in info.headers:  # as Envoy: every request gets one, kept downstream
            info.headers["x-request-id"] = flow.request.headers["x-request-id"] = new_request_id()
        if is_grpc(info.headers):
            info.protocol = "grpc"
            if role == "inbound":
                return grpcflow.inbound_call(flow, info, self.upstreams)
            dest = snap.config.destinations.get(flow.request.host.lower())
            if role == "outbound" and dest is not None and dest.protocol != "tcp":
                return grpcflow.outbound_call(self.rt, flow, info, dest, self.upstreams)
            if role == "gateway":
                return grpcflow.gateway_call(self.rt, flow, info, self.upstreams)
            return None  # answered in `request` (no route, denied), as gRPC errors
        if wants_stream(info.headers):
            route_stream(self.rt, flow, info)
        return None

    async def request(self, flow: http.HTTPFlow) -> None:
        info: FlowInfo | None = flow.metadata.get(KEY)
        if info is None or info.native or flow.response is not None:
            return
        try:
            if info.role == "outbound":
                response = await self._outbound(flow, info)
                if response is None:
                    return  # allow-any pass-through: mitmproxy forwards it
            elif info.role == "inbound":
                response = await serve_inbound(self.rt, flow, info)
            else:
                response = await serve_gateway(self.rt, flow, info)
        except StreamInstead as signal:
            stream_instead(flow, info, signal)
            return
        if info.protocol == "grpc":
            response = grpcflow.as_grpc_error(response, info.flags)
        elif self.draining or client_wants_close(flow.request, info.headers):
            response.headers["connection"] = "close"
        flow.response = response

    async def _outbound(self, flow: http.HTTPFlow, info: FlowInfo) -> http.Response | None:
        decision = decide(info.snapshot.config, outbound_request(flow.request, info))
        if decision.passthrough:
            info.service = PASSTHROUGH
            info.native = True
            return None
        if decision.destination is None:  # refused at the source, or not a mesh service
            # Istio's names: a refused outside host went to the BlackHoleCluster
            info.service = decision.service or BLACKHOLE
            assert decision.answer is not None
            return answer_response(decision.answer, info.flags)
        return await serve_decision(self.rt, info, flow.request, decision)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """Tunnels carry no L7 policy: only `protocol: tcp` services, and outside hosts under
        allow-any, may be reached through one."""
        if self.tcp is not None and self.tcp.open(flow):
            return
        config = self.rt.snapshot.config
        host = flow.request.host.lower()
        if host in config.destinations:
            # An HTTP or gRPC service (`grpc_proxy` opens such tunnels): the tunnel is
            # terminated here and each request in it gets the full policy (connection_strategy
            # is lazy: nothing is connected for the tunnel itself).
            return
        if host in config.denied:
            flow.response = flag_response(403, ["RBAC"])
        elif config.outbound_policy == "registry-only":
            flow.response = flag_response(502, ["NR"])

    # --- flow end --------------------------------------------------------------------------

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """HTTP/2 clients reach sidecars and gRPC apps over plaintext with prior knowledge."""
        server = data.server
        if server.tls or server.address is None or not h2c.client_speaks_h2(data.client):
            return
        snap = self.rt.snapshot
        address = f"{server.address[0]}:{server.address[1]}"
        inbound = snap.config.inbound
        if address == snap.bindings.app:
            if inbound is not None and inbound.protocol == "grpc":
                h2c.mark_h2c(server)
        elif any(ep.address == address for eps in snap.candidates.values() for ep in eps):
            h2c.mark_h2c(server)  # another sidecar's inbound listener (mTLS disabled)

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        if data.server.address is not None:
            self.upstreams.connected(data.client.id, f"{data.server.address[0]}:{data.server.address[1]}")

    def server_disconnected(self, data: server_hooks.ServerConnectionHookData) -> None:
        if data.server.address is not None:
            self.upstreams.disconnected(data.client.id, f"{data.server.address[0]}:{data.server.address[1]}")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        info: FlowInfo | None = flow.metadata.get(KEY)
        if info is None or flow.response is None:
            return
        if grpcflow.GRPC_KEY in flow.metadata:
            grpcflow.response_headers(flow, info)
        elif info.native:
            flow.response.stream = True

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        assert flow.response is not None
        if grpcflow.GRPC_KEY in flow.metadata:
            return self._grpc_response(flow)
        self._finish(flow, flow.response.status_code)
        return None

    async def _grpc_response(self, flow: http.HTTPFlow) -> None:
        info: FlowInfo | None = flow.metadata.get(KEY)
        if info is not None:
            await grpcflow.outbound_response(self.rt, flow, info)
        assert flow.response is not None
        self._finish(flow, flow.response.status_code)

    def error(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        info: FlowInfo | None = flow.metadata.get(KEY)
        if info is not None and grpcflow.recoverable(flow, info):
            return self._grpc_recover(flow, info)
        self._error(flow)
        return None

    async def _grpc_recover(self, flow: http.HTTPFlow, info: FlowInfo) -> None:
        """A refused call answered after all: the `response` hook then finishes the flow."""
        flow.response = await grpcflow.recover(self.rt, flow, info)
        flow.error = None

    def _error(self, flow: http.HTTPFlow) -> None:
        call = flow.metadata.pop(grpcflow.GRPC_KEY, None)
        if call is not None:
            call.release()
        info: FlowInfo | None = flow.metadata.get(KEY)
        if info is not None and flow.response is None:
            info.flags.append("UF" if info.native else "DC")
        # Counted with the code the client got: mitmproxy answers a failed native flow with
        # 502 (our flagged page); a client that went away got nothing, counted as nginx's 499.
        fallback = 502 if info is not None and info.native else 499
        self._finish(flow, flow.response.status_code if flow.response else fallback)

    def _finish(self, flow: http.HTTPFlow, status: int) -> None:
        info: FlowInfo | None = flow.metadata.pop(KEY, None)
        if info is None:
            return
        self.in_flight -= 1
        if info.role == "inbound" and "x-mesh-health-check" not in info.headers:
            self.rt.recent.add((time.monotonic() - info.started) * 1000.0, status)
        reporting.finish(self.rt, flow, info, status)
