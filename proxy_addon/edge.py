"""The edge steps of a gateway request, around the shared `decide()`.

Order: the listener (by port, then SNI and Host: none takes it, 404 NR); headers a client
could forge (the configured subject headers, the mesh's request principal) are dropped; the
per-client rate limit (429 RL with retry-after; by claim: after authentication); the end-user
token (a bad one: 401 UAEX, whatever the rule); then `decide()` with the listener and the
verified claims, which filters rules by listener and host, refuses a missing token where a rule
requires one (401) and answers CORS preflights. On the way out the verified subject goes in
the header the operator named, the token is removed unless the provider forwards it, and the
response gets the CORS headers of an allowed origin.
"""

from __future__ import annotations

import json

from mitmproxy import http

from meshctl.contract import CompiledCors, GatewayListener, RuntimeBindings, SidecarConfig
from meshctl.decision.cors import allowed_origin, response_headers
from meshctl.decision.hosts import listener_ports
from proxy_addon.client_limit import ClientLimiter, limiter_for, retry_after
from proxy_addon.edge_auth import Authenticator, AuthError, Principal, authenticator_for
from proxy_addon.flowinfo import REQUEST_PRINCIPAL_HEADER, FlowInfo
from proxy_addon.responses import FLAG_HEADER, flag_response

UNAUTHENTICATED = "UAEX"  # Envoy's flag for a request an auth filter refused


class EdgeState:
    """What a gateway keeps between flows: bound ports, JWT keys, client buckets."""

    def __init__(self) -> None:
        self.authenticator: Authenticator | None = None
        self.limiter: ClientLimiter | None = None
        self.subject_headers: tuple[str, ...] = ()
        self._ports: dict[int, tuple[GatewayListener, ...]] = {}

    def install(self, config: SidecarConfig, bindings: RuntimeBindings) -> None:
        gateway = config.gateway
        if gateway is None:
            self._ports, self.authenticator, self.limiter, self.subject_headers = {}, None, None, ()
            return
        self._ports = listener_ports(gateway, bindings)
        self.authenticator = authenticator_for(self.authenticator, gateway.jwt)
        self.limiter = limiter_for(self.limiter, gateway.rate_limit)
        self.subject_headers = tuple(p.subject_header for p in gateway.jwt if p.subject_header)

    def ports(self) -> dict[int, tuple[GatewayListener, ...]]:
        return self._ports

    async def close(self) -> None:
        if self.authenticator is not None:
            await self.authenticator.close()


def unauthorized(message: str, info: FlowInfo) -> http.Response:
    info.flags.append(UNAUTHENTICATED)
    flags = ",".join(info.flags)
    body = json.dumps({"error": f"unauthenticated: {message}", "flags": flags}) + "\n"
    return http.Response.make(401, body, {
        "content-type": "application/json", FLAG_HEADER: flags,
        "www-authenticate": 'Bearer error="invalid_token"',
    })


def drop_forgeable(edge: EdgeState, request: http.Request, info: FlowInfo) -> None:
    for name in (*edge.subject_headers, REQUEST_PRINCIPAL_HEADER):
        if name in info.headers:
            del info.headers[name]
            request.headers.pop(name, None)


def client_key(limiter: ClientLimiter, flow: http.HTTPFlow, info: FlowInfo,
               principal: Principal | None) -> str | None:
    spec = limiter.spec
    if spec.key == "header":
        return info.headers.get(spec.name or "")
    if spec.key == "claim":
        if principal is None:
            return None
        value = principal.claims.get(spec.name or "")
        return None if value is None else str(value)
    peer = flow.client_conn.peername
    return peer[0] if peer else None


def rate_limited(edge: EdgeState, flow: http.HTTPFlow, info: FlowInfo,
                 principal: Principal | None, after_auth: bool) -> http.Response | None:
    limiter = edge.limiter
    if limiter is None or (limiter.spec.key == "claim") != after_auth:
        return None
    wait = limiter.take(client_key(limiter, flow, info, principal))
    if wait is None:
        return None
    info.flags.append("RL")
    response = flag_response(429, info.flags)
    response.headers["retry-after"] = retry_after(wait)
    return response


async def authenticate(edge: EdgeState, info: FlowInfo) -> Principal | http.Response | None:
    if edge.authenticator is None:
        return None
    try:
        return await edge.authenticator.authenticate(info.headers)
    except AuthError as exc:
        return unauthorized(str(exc), info)


def forward_identity(request: http.Request, principal: Principal | None, info: FlowInfo) -> None:
    if principal is None:
        return
    provider = principal.provider
    if provider.subject_header:
        request.headers[provider.subject_header] = principal.subject
    if not provider.forward_original_token:
        request.headers.pop("authorization", None)
    info.request_principal = principal.request_principal


def add_cors(response: http.Response, policy: CompiledCors | None, info: FlowInfo) -> None:
    if policy is None:
        return
    origin = allowed_origin(policy, info.headers)
    if origin is not None:
        for name, value in response_headers(policy, origin).items():
            if name == "vary" and "vary" in response.headers:
                response.headers["vary"] = f"{response.headers['vary']}, {value}"
            else:
                response.headers[name] = value
