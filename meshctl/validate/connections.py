"""Checks of listener connection settings (ConnectionSettings): values a sidecar can honour,
and one setting per port (a connection's limits apply before its Host or SNI is known)."""

from __future__ import annotations

from collections.abc import Iterator

from meshctl.model import MeshPolicy
from meshctl.model.mesh import connection_limits
from meshctl.model.values import ConnectionSettings, format_duration_ms
from meshctl.validate.diagnostics import Diagnostic, at
from meshctl.yamlio import Document, Path

# Below these a healthy client on a loaded machine is cut (a TLS handshake and the headers of a
# browser's first request over a slow link take a second or more).
MIN_REQUEST_HEADERS_TIMEOUT_MS = 100
MIN_IDLE_TIMEOUT_MS = 1_000


def check_connections(policy: MeshPolicy) -> Iterator[Diagnostic]:
    mesh_defaults: ConnectionSettings | None = None
    for loc in policy.meshes:
        defaults = loc.obj.spec.defaults
        if defaults is not None and defaults.connections is not None:
            mesh_defaults = mesh_defaults or defaults.connections
            yield from _check(loc.doc, ("spec", "defaults", "connections"), defaults.connections)
    for svc in policy.services:
        if svc.obj.spec.connections is not None:
            yield from _check(svc.doc, ("spec", "connections"), svc.obj.spec.connections)
    for gw in policy.gateways:
        spec, doc = gw.obj.spec, gw.doc
        if spec.connections is not None:
            yield from _check(doc, ("spec", "connections"), spec.connections)
        first: dict[int, tuple[str, object]] = {}
        for i, listener in enumerate(spec.listeners or ()):
            if listener.connections is not None:
                yield from _check(doc, ("spec", "listeners", i, "connections"), listener.connections)
            resolved = connection_limits(listener.connections, spec.connections, mesh_defaults)
            name, other = first.setdefault(listener.port, (listener.name, resolved))
            if other != resolved:
                yield at(doc, ("spec", "listeners", i, "connections") if listener.connections
                         else ("spec", "listeners", i, "name"), "MESH080",
                         f"listener '{listener.name}' shares port {listener.port} with listener "
                         f"'{name}' but not its connection settings: a connection's limits apply "
                         "before its host is known, so listeners on one port need the same ones")


def _check(doc: Document, where: Path, settings: ConnectionSettings) -> Iterator[Diagnostic]:
    headers = settings.request_headers_timeout
    if isinstance(headers, int) and headers < MIN_REQUEST_HEADERS_TIMEOUT_MS:
        yield at(doc, (*where, "requestHeadersTimeout"), "MESH080",
                 f"requestHeadersTimeout {format_duration_ms(headers)} is below "
                 f"{format_duration_ms(MIN_REQUEST_HEADERS_TIMEOUT_MS)}: healthy clients would be "
                 "cut; use 'none' to turn it off")
    idle = settings.idle_timeout
    if idle is not None and idle < MIN_IDLE_TIMEOUT_MS:
        yield at(doc, (*where, "idleTimeout"), "MESH080",
                 f"idleTimeout {format_duration_ms(idle)} is below "
                 f"{format_duration_ms(MIN_IDLE_TIMEOUT_MS)}: keep-alive connections would be "
                 "closed between requests")
