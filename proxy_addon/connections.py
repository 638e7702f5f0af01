"""Client connection limits per listener: request-header timeout, idle timeout, connection cap.

Envoy's HTTP connection manager and listener settings (`request_headers_timeout`,
`idle_timeout`, the listener connection limit), compiled per listener (`ConnectionLimits`):

- **maxConnections**: a connection over the listener's limit is closed on accept (mitmproxy's
  `client_connected` hook: setting `client.error` closes it before a byte is read), counted as
  `meshctl_downstream_cx_overflow_total`; the connections already open are served.
- **idleTimeout**: mitmproxy's own per-connection watchdog (`tcp_timeout`), its timeout set per
  connection from the listener's limits (see `watchdog_seconds`). A request being answered is not idle (mitmproxy
  disarms the watchdog while hooks run).
- **requestHeadersTimeout**: from the first byte of a request to the end of its headers
  (`requestheaders`). A client that dribbles header bytes (slow loris) keeps the idle watchdog
  happy but is cut here. The timer starts on the first bytes read while the connection has no
  request under way; it is off for good once the connection is a tunnel (CONNECT, TCP,
  WebSocket) or speaks HTTP/2 (frames of other streams would restart it; HTTP/2's own framing
  bounds a header block).

The first byte is seen by wrapping the connection handler's `server_event` for that connection
(the one place mitmproxy reads client bytes); `proxy_addon/patches.py` records the digests of
the internals this relies on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mitmproxy import connection, http
from mitmproxy.proxy import events, mode_specs
from prometheus_client import CollectorRegistry, Counter, Gauge

from meshctl.contract import ConnectionLimits, RuntimeBindings, SidecarConfig
from meshctl.decision.hosts import listener_ports

logger = logging.getLogger("meshctl.sidecar")

H2_PREFACE = b"PRI * HTTP/2.0"


def listener_limits(
    config: SidecarConfig, bindings: RuntimeBindings, roles: dict[str, str]
) -> dict[str, tuple[str, ConnectionLimits]]:
    """Mode spec -> (metric label, limits): a gateway's by the listeners on each port (the
    first's; validate makes them agree), a service sidecar's outbound and inbound alike."""
    by_port = listener_ports(config.gateway, bindings) if config.gateway is not None else {}
    out: dict[str, tuple[str, ConnectionLimits]] = {}
    for spec, role in roles.items():
        port = mode_specs.ProxyMode.parse(spec).listen_port()
        on_port = by_port.get(port) if port is not None else None
        if role == "gateway" and on_port:
            out[spec] = (on_port[0].name, on_port[0].connections)
        else:
            out[spec] = (role, config.connections)
    return out


def watchdog_seconds(limits: dict[str, tuple[str, ConnectionLimits]]) -> int:
    """mitmproxy's `tcp_timeout` option: the shortest idle timeout of any listener.

    A connection's watchdog starts (an eager task) before `client_connected` can set its own
    timeout, and its first sleep is this long; after it, each sleep uses the connection's own
    timeout. So no connection sleeps past its timeout, and longer ones simply sleep again."""
    idle = [entry[1].idle_timeout_ms for entry in limits.values()]
    return max(1, min(idle) // 1000) if idle else 300


class ConnectionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.active = Gauge("meshctl_downstream_cx_active", "Open client connections, by listener",
                            ("listener",), registry=registry)
        self.overflow = Counter(
            "meshctl_downstream_cx_overflow",
            "Client connections closed on accept: the listener's maxConnections were open",
            ("listener",), registry=registry)
        self.header_timeouts = Counter(
            "meshctl_downstream_rq_header_timeout",
            "Client connections closed by the request-header timeout", ("listener",), registry=registry)
        self.idle_timeouts = Counter(
            "meshctl_downstream_cx_idle_timeout",
            "Client connections closed by the idle timeout", ("listener",), registry=registry)


class HeaderTimer:
    """One client connection's request-header timer."""

    def __init__(self, handler: Any, client: connection.Client, timeout_s: float,
                 on_fire: Callable[[], None]) -> None:
        self.handler, self.client, self.timeout_s, self.on_fire = handler, client, timeout_s, on_fire
        self.in_progress: set[str] = set()  # flow ids whose headers arrived, not yet answered
        self.off = False
        self.first = True
        self._timer: asyncio.TimerHandle | None = None
        inner: Callable[[events.Event], Awaitable[None]] = handler.server_event

        async def server_event(event: events.Event) -> None:
            if (not self.off and self._timer is None and not self.in_progress
                    and isinstance(event, events.DataReceived) and event.connection is client):
                self._data(event.data)
            await inner(event)

        handler.server_event = server_event

    def _data(self, data: bytes) -> None:
        if self.first:
            self.first = False
            if data.startswith(H2_PREFACE):
                self.stop()  # cleartext HTTP/2 with prior knowledge
                return
        self._timer = asyncio.get_running_loop().call_later(self.timeout_s, self._fire)

    def _fire(self) -> None:
        self._timer = None
        io = self.handler.transports.get(self.client)
        if io is not None and io.handler is not None:
            self.on_fire()
            io.handler.cancel("request headers timeout")

    def headers_done(self, flow: http.HTTPFlow) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if flow.request.http_version.startswith("HTTP/2"):
            self.stop()
        else:
            self.in_progress.add(flow.id)

    def request_done(self, flow: http.HTTPFlow) -> None:
        self.in_progress.discard(flow.id)

    def stop(self) -> None:
        self.off = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class ConnectionGuard:
    """mitmproxy addon: applies each listener's ConnectionLimits to its client connections.

    `limits` maps a listener's mode spec (normalised) to (metric label, limits); it is the
    server's dict, updated in place on reload. Connections already open keep the limits they
    were accepted under, except the connection count, which always counts every open one.
    """

    def __init__(self, handlers: Callable[[], dict[Any, Any]],
                 limits: dict[str, tuple[str, ConnectionLimits]], registry: CollectorRegistry) -> None:
        self._handlers = handlers  # Proxyserver.connections: client id -> its ConnectionHandler
        self.limits = limits
        self.metrics = ConnectionMetrics(registry)
        self.open: dict[str, int] = {}
        self._admitted: dict[str, tuple[str, str]] = {}  # client id -> (mode spec, label) counted on
        self._timers: dict[str, HeaderTimer] = {}

    def client_connected(self, client: connection.Client) -> None:
        spec = client.proxy_mode.full_spec
        entry = self.limits.get(spec)
        if entry is None:
            return
        label, limits = entry
        if self.open.get(spec, 0) >= limits.max_connections:
            self.metrics.overflow.labels(label).inc()
            client.error = "listener connection limit"
            return
        self.open[spec] = self.open.get(spec, 0) + 1
        self._admitted[client.id] = (spec, label)
        self.metrics.active.labels(label).inc()
        handler = self._handlers().get(client.id)
        if handler is None:
            return
        watchdog = handler.timeout_watchdog
        watchdog.timeout = limits.idle_timeout_ms / 1000
        on_idle = watchdog.callback

        async def idle() -> None:
            self.metrics.idle_timeouts.labels(label).inc()
            await on_idle()

        watchdog.callback = idle
        if limits.request_headers_timeout_ms is not None:
            self._timers[client.id] = HeaderTimer(
                handler, client, limits.request_headers_timeout_ms / 1000,
                self.metrics.header_timeouts.labels(label).inc)

    def client_disconnected(self, client: connection.Client) -> None:
        timer = self._timers.pop(client.id, None)
        if timer is not None:
            timer.stop()
        admitted = self._admitted.pop(client.id, None)
        if admitted is not None:
            self.open[admitted[0]] -= 1
            self.metrics.active.labels(admitted[1]).dec()

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        timer = self._timers.get(flow.client_conn.id)
        if timer is not None:
            timer.headers_done(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        timer = self._timers.get(flow.client_conn.id)
        if timer is not None:
            timer.request_done(flow)

    error = response

    def _tunnel(self, flow: Any) -> None:
        timer = self._timers.get(flow.client_conn.id)
        if timer is not None:
            timer.stop()

    http_connect = _tunnel
    tcp_start = _tunnel
    websocket_start = _tunnel
