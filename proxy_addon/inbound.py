"""The server side: mTLS mode, access policy and rate limit, then the local application.

The caller's identity is the SPIFFE ID of the client certificate that `proxy_addon.tls`
verified during the handshake (None on a plain connection); the app receives it in
`x-forwarded-client-cert`, which is stripped from every incoming request first.
"""

from __future__ import annotations

import asyncio

from mitmproxy import http

from meshctl.decision import Request, decide
from proxy_addon import tls
from proxy_addon.flowinfo import (
    REQUEST_PRINCIPAL_HEADER,
    SOURCE_VERSION_HEADER,
    SOURCE_WORKLOAD_HEADER,
    STREAM_RESPONSE_OVER,
    XFCC_HEADER,
    FlowInfo,
    forward_headers,
    make_response,
)
from proxy_addon.responses import answer_response, flag_response
from proxy_addon.runtime import SidecarRuntime
from proxy_addon.tracing import next_traceparent
from proxy_addon.upstream import UpstreamError

SPIFFE_PREFIX = "spiffe://"


# Peer certificate -> its SPIFFE ID: read once per connection (every request on it presents
# the same certificate object), not from the certificate's extensions on every request.
_IDENTITIES: dict[int, tuple[object, str | None]] = {}
_IDENTITIES_MAX = 1024


def peer_identity(flow: http.HTTPFlow) -> str | None:
    client = flow.client_conn
    if not client.tls_established or not client.certificate_list:
        return None
    cert = client.certificate_list[0]
    found = _IDENTITIES.get(id(cert))
    if found is None or found[0] is not cert:
        if len(_IDENTITIES) >= _IDENTITIES_MAX:
            _IDENTITIES.clear()  # many connections came and went: start over rather than grow
        found = _IDENTITIES[id(cert)] = (cert, tls.peer_identity(client))
    return found[1]


def client_cert_header(info: FlowInfo) -> str | None:
    """The x-forwarded-client-cert value for the app, None when the caller has no identity."""
    if info.identity is None:
        return None
    return tls.xfcc_value(info.snapshot.config.identity, info.identity)


def workload_of(identity: str) -> str:
    """spiffe://td/service/reviews -> reviews; spiffe://td/gateway/public -> gateway/public."""
    path = identity[len(SPIFFE_PREFIX):].partition("/")[2]
    kind, _, name = path.partition("/")
    return name if kind == "service" else path


def admission(flow: http.HTTPFlow, info: FlowInfo) -> http.Response | None:
    """The refusals that happen before the app sees anything; None to admit."""
    config = info.snapshot.config
    info.identity = peer_identity(flow)
    info.security = "mutual_tls" if info.identity is not None else "none"
    request = flow.request
    if info.identity is not None and workload_of(info.identity).startswith("gateway/"):
        info.request_principal = info.headers.get(REQUEST_PRINCIPAL_HEADER)
    decision = decide(config, Request(request.method, request.path, inbound=True, identity=info.identity,
                                      principal=info.request_principal))
    # Strict mTLS refuses before any policy is read (reload.check_pair ensures certificates).
    if decision.answer is not None and decision.access is None:
        return answer_response(decision.answer, info.flags)
    if info.identity is not None:
        info.source_workload = workload_of(info.identity)
    else:
        info.source_workload = info.headers.get(SOURCE_WORKLOAD_HEADER, "unknown")
    info.source_version = info.headers.get(SOURCE_VERSION_HEADER, "unknown")
    if decision.access is not None:
        info.access_policy = decision.access.policy
    if decision.answer is not None:
        return answer_response(decision.answer, info.flags)
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
    xfcc = client_cert_header(info)
    if xfcc is not None:
        headers[XFCC_HEADER] = xfcc
    info.traceparent = next_traceparent(
        info.headers.get("traceparent"), info.snapshot.config.telemetry.tracing_sampling
    )
    headers["traceparent"] = info.traceparent
    info.endpoint = app
    info.attempts = 1
    try:
        result = await rt.app_upstream.send(
            app, request.path, request.method, headers, request.raw_content or b"", "http",
            stream_over=STREAM_RESPONSE_OVER if request.method == "GET" else None,
        )
    except UpstreamError as exc:
        info.flags.append("UF" if exc.kind == "connect-failure" else "UC")
        return flag_response(503, info.flags)
    except asyncio.CancelledError:
        raise
    return make_response(result.status, result.reason, result.headers, result.body)
