"""Per-flow bookkeeping shared by the handlers and the addon: role, snapshot, outcome."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mitmproxy import http
from multidict import CIMultiDict

from meshctl.decision.headers import joined
from meshctl.decision.routing import RequestView, view_from_target
from proxy_addon.state import Snapshot
from proxy_addon.upstream import HOP_BY_HOP

KEY = "meshctl"
SOURCE_WORKLOAD_HEADER = "x-mesh-source-workload"
SOURCE_VERSION_HEADER = "x-mesh-source-version"
# Never forwarded as received. x-forwarded-client-cert is set by the inbound sidecar from the
# verified client certificate only, so neither an app nor a caller can forge it.
XFCC_HEADER = "x-forwarded-client-cert"
# "<iss>/<sub>" of the end user a gateway verified; the destination trusts it only from a
# gateway's verified identity (AccessPolicy requestPrincipals).
REQUEST_PRINCIPAL_HEADER = "x-mesh-request-principal"
# x-mesh-peer carries the caller's metric labels, x-mesh-health-check marks a probe.
INTERNAL_HEADERS = frozenset(
    {SOURCE_WORKLOAD_HEADER, SOURCE_VERSION_HEADER, XFCC_HEADER, "x-mesh-stream",
     REQUEST_PRINCIPAL_HEADER, "x-mesh-peer", "x-mesh-health-check"}
)
# Bodies above this, upgrades, event streams and chunked uploads go through mitmproxy's own
# streaming path instead of the pooled client, which buffers (and so could retry).
STREAM_BODY_THRESHOLD = 1024 * 1024
# A GET whose answer declares more than this is sent again through the streaming path rather
# than held in memory (see streaming.stream_instead).
STREAM_RESPONSE_OVER = 1024 * 1024
# Set on such a second request so the next sidecar streams it at once; never reaches an app.
STREAM_HINT_HEADER = "x-mesh-stream"


@dataclass(slots=True)
class FlowInfo:
    role: str  # outbound | inbound | gateway
    snapshot: Snapshot
    started: float = field(default_factory=time.monotonic)
    service: str = "unknown"  # destination service
    version: str = "unknown"  # destination version
    source_workload: str = "unknown"
    source_version: str = "unknown"
    security: str = "unknown"  # connection_security_policy
    rule: str | None = None
    endpoint: str | None = None
    attempts: int = 0
    flags: list[str] = field(default_factory=list)
    native: bool = False  # forwarded by mitmproxy itself (streaming)
    traceparent: str = ""
    identity: str | None = None  # the caller's verified SPIFFE ID (inbound)
    request_principal: str | None = None  # the end user's "<iss>/<sub>" (gateway, inbound)
    access_policy: str | None = None  # the AccessPolicy that decided; None: the default did
    set_cookies: list[str] = field(default_factory=list)  # Set-Cookie values for the client
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names, read once
    protocol: str = "http"  # request_protocol: http | grpc


def header_dict(request: http.Request) -> dict[str, str]:
    """All headers, names lower-cased, repeated ones joined: one pass over the raw fields
    (each mitmproxy `headers.get` walks them all again)."""
    return joined(request.headers.fields)


def host_header(request: http.Request, headers: dict[str, str]) -> str | None:
    """`request.host_header` from the headers already read (`header_dict` of the same request):
    HTTP/1's Host header without another walk over the raw fields. A value beyond ASCII is
    asked of mitmproxy, which decodes it as UTF-8 where `header_dict` reads Latin-1."""
    if request.is_http2 or request.is_http3:
        return request.host_header
    value = headers.get("host")
    return value if value is None or value.isascii() else request.host_header


def request_view(request: http.Request, headers: dict[str, str] | None = None) -> RequestView:
    if headers is None:
        headers = header_dict(request)
    return view_from_target(request.method, request.path, headers)


def wants_stream(headers: dict[str, str]) -> bool:
    if "upgrade" in headers or STREAM_HINT_HEADER in headers:
        return True
    if "text/event-stream" in headers.get("accept", ""):
        return True
    length = headers.get("content-length")
    if length is not None:
        return length.isdigit() and int(length) > STREAM_BODY_THRESHOLD
    return "transfer-encoding" in headers


def forward_headers(request: http.Request) -> CIMultiDict[str]:
    """The request's end-to-end headers, without hop-by-hop and mesh-internal ones."""
    out: CIMultiDict[str] = CIMultiDict()
    for raw_name, raw_value in request.headers.fields:
        name = raw_name.decode("latin-1")
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in INTERNAL_HEADERS:
            continue
        out.add(name, raw_value.decode("latin-1"))
    return out


def make_response(
    status: int, reason: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> http.Response:
    fields = tuple(headers) + ((b"content-length", str(len(body)).encode()),)
    now = time.time()
    return http.Response(
        b"HTTP/1.1", status, reason, http.Headers(fields), body, None, now, now
    )
