"""The server side: mTLS mode, access policy and rate limit, then the local application.

`peer_identity(flow)` is the seam for mutual TLS: the SPIFFE ID (URI SAN) of the verified
client certificate, None on a plain connection.
"""

from __future__ import annotations

import asyncio

from mitmproxy import http

from proxy_addon.access import decide
from proxy_addon.flowinfo import (
    SOURCE_VERSION_HEADER,
    SOURCE_WORKLOAD_HEADER,
    FlowInfo,
    forward_headers,
    make_response,
)
from proxy_addon.responses import flag_response
from proxy_addon.runtime import SidecarRuntime
from proxy_addon.tracing import next_traceparent
from proxy_addon.upstream import UpstreamError

SPIFFE_PREFIX = "spiffe://"


def peer_identity(flow: http.HTTPFlow) -> str | None:
    conn = flow.client_conn
    if not conn.tls_established or not conn.certificate_list:
        return None
    for name in conn.certificate_list[0].altnames:
        value = str(getattr(name, "value", name))
        if value.startswith(SPIFFE_PREFIX):
            return value
    return None


def workload_of(identity: str) -> str:
    """spiffe://td/service/reviews -> reviews; spiffe://td/gateway/public -> gateway/public."""
    path = identity[len(SPIFFE_PREFIX):].partition("/")[2]
    kind, _, name = path.partition("/")
    return name if kind == "service" else path


def admission(flow: http.HTTPFlow, info: FlowInfo) -> http.Response | None:
    """The refusals that happen before the app sees anything; None to admit."""
    config = info.snapshot.config
    tls = flow.client_conn.tls_established
    info.security = "mutual_tls" if tls else "none"
    # Strict mTLS can only be enforced where the runtime bound certificates.
    if config.mtls == "strict" and not tls and info.snapshot.bindings.tls is not None:
        info.flags.append("RBAC")
        return flag_response(403, info.flags)
    info.identity = peer_identity(flow)
    if info.identity is not None:
        info.source_workload = workload_of(info.identity)
    else:
        info.source_workload = flow.request.headers.get(SOURCE_WORKLOAD_HEADER, "unknown")
    info.source_version = flow.request.headers.get(SOURCE_VERSION_HEADER, "unknown")
    inbound = config.inbound
    if inbound is not None:
        verdict = decide(inbound.access, info.identity, flow.request.method, flow.request.path)
        if not verdict.allowed:
            info.flags.append("RBAC")
            return flag_response(403, info.flags)
    limiter = info.snapshot.rate_limiter
    if limiter is not None and not limiter.take():
        info.flags.append("RL")
        return flag_response(429, info.flags)
    return None


async def serve_inbound(rt: SidecarRuntime, flow: http.HTTPFlow, info: FlowInfo) -> http.Response:
    refusal = admission(flow, info)
    if refusal is not None:
        return refusal
    app = info.snapshot.bindings.app
    if app is None:
        info.flags.append("UH")
        return flag_response(503, info.flags)
    request = flow.request
    headers = forward_headers(request)
    headers["host"] = request.host_header or info.service
    info.traceparent = next_traceparent(
        request.headers.get("traceparent"), info.snapshot.config.telemetry.tracing_sampling
    )
    headers["traceparent"] = info.traceparent
    info.endpoint = app
    info.attempts = 1
    try:
        result = await rt.app_upstream.send(
            app, request.path, request.method, headers, request.raw_content or b"", "http"
        )
    except UpstreamError as exc:
        info.flags.append("UF" if exc.kind == "connect-failure" else "UC")
        return flag_response(503, info.flags)
    except asyncio.CancelledError:
        raise
    return make_response(result.status, result.reason, result.headers, result.body)
