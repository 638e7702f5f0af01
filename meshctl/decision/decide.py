"""`decide(config, request) -> Decision`: what one sidecar does with one request, as a value.

Pure: no I/O, no clock, no random draw. What is left to chance (a fault's percentage, a weighted
split, a new sticky cookie, a mirror's share) is in the Decision as probabilities; the sidecar
draws, `meshctl explain` prints them. Order as the addon applies it:

- outbound (a service's sidecar): destination lookup (denied at the source: 403 RBAC; not a
  mesh service: 502 NR under registry-only, else passed through), then the route;
- gateway: gateway rule (none: 404 NR), its redirect or direct response, the destination it
  names (none reachable: 502 NR), its request header operations, then the route;
- route: first matching rule (none: 404 NR), its redirect or direct response, otherwise the
  forward: backends, rewrite, header operations, fault, timeout, retries for this request;
- inbound: strict mTLS (no verified identity: 403 RBAC), then the access policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from meshctl.contract import (
    CompiledBackend,
    CompiledCors,
    CompiledFault,
    CompiledGatewayRule,
    CompiledHeaderOps,
    CompiledRouteRule,
    Destination,
    RequestMatch,
    RetryPolicy,
    SidecarConfig,
)
from meshctl.decision.access import AccessDecision
from meshctl.decision.access import decide as access_verdict
from meshctl.decision.cors import allowed_origin, is_preflight, preflight_headers
from meshctl.decision.headers import with_ops
from meshctl.decision.hosts import host_of, rule_applies
from meshctl.decision.routing import (
    RequestView,
    backend_probabilities,
    match_rule,
    pick_sticky,
    redirect_location,
    rewritten_path,
    sticky_key,
    view_from_target,
)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
MAX_RETRY_BODY = 64 * 1024  # larger bodies are not kept for a second try


@dataclass(frozen=True, slots=True)
class Request:
    """The parts of a request a decision reads. Header names lower-case, repeats joined ", "."""

    method: str
    target: str  # origin-form: /path?query
    host: str = ""  # the service called (outbound), lower-case, no port
    headers: Mapping[str, str] = field(default_factory=dict)
    authority: str = ""  # Host (or :authority) as received, port included; redirects keep it
    body_size: int = 0
    inbound: bool = False  # arriving at this sidecar's own service
    identity: str | None = None  # inbound: the caller's verified SPIFFE ID
    source_version: str | None = None  # outbound: this sidecar's own version (match.from svc/v2)
    # The edge. `listener`: the gateway listener that took the request (None: rules are not
    # filtered by listener, as `explain` without one); `claims`: of the end-user token the
    # gateway verified (None: no token); `principal`: inbound, "<iss>/<sub>" a gateway vouched
    # for (trusted only from a gateway's verified identity).
    listener: str | None = None
    claims: Mapping[str, Any] | None = None
    principal: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """The sidecar answers by itself. With `flags`, the flagged JSON error; else `body`."""

    status: int
    flags: tuple[str, ...] = ()
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    reason: str = ""

    @property
    def location(self) -> str | None:
        return next((v for k, v in self.headers if k == "location"), None)


@dataclass(frozen=True, slots=True)
class Decision:
    request: Request  # as the route saw it: after the gateway rule's header operations
    view: RequestView | None  # None inbound, where no route is read
    service: str | None = None  # the service whose route applies (or that was refused)
    destination: Destination | None = None
    gateway_rule: CompiledGatewayRule | None = None
    rule: CompiledRouteRule | None = None
    match: RequestMatch | None = None  # the match entry of `rule` that held
    gateway_match: RequestMatch | None = None  # the match entry of `gateway_rule` that held
    answer: Answer | None = None  # None: forwarded (or passed through)
    passthrough: bool = False  # outside the mesh under allow-any: forwarded as it is
    split: tuple[tuple[CompiledBackend, float], ...] = ()  # the rule's weights, as shares
    backends: tuple[tuple[CompiledBackend, float], ...] = ()  # for this request (sticky: one)
    sticky_key: str | None = None
    upstream_target: str | None = None  # after the rewrite
    upstream_host: str | None = None  # the Host the backend gets, when rewritten
    retry_attempts: int = 0  # retries this request may get
    unreached_retries: int = 0  # retries after a try that never reached the app (every method)
    retry_refusal: str | None = None  # why it gets none though the rule has retries
    access: AccessDecision | None = None  # refused at the source, or (inbound) the verdict
    cors: CompiledCors | None = None  # gateway: the CORS policy of the rules that applied

    @property
    def rule_name(self) -> str | None:
        """"<gateway rule>/<route rule>" behind a gateway, as the access log names it."""
        gateway = self.gateway_rule.name if self.gateway_rule else None
        route = self.rule.name if self.rule else None
        if gateway and route and gateway != route:
            return f"{gateway}/{route}"
        return gateway or route

    @property
    def fault(self) -> CompiledFault | None:
        return self.rule.fault if self.rule is not None and self.answer is None else None

    @property
    def timeout_ms(self) -> int | None:
        return self.rule.timeout_ms if self.rule is not None else None

    @property
    def request_header_ops(self) -> tuple[CompiledHeaderOps, ...]:
        """Applied in order: the gateway rule's (before the route matched), the route rule's."""
        return tuple(r.request_headers for r in (self.gateway_rule, self.rule) if r is not None)

    @property
    def response_header_ops(self) -> tuple[CompiledHeaderOps, ...]:
        """Applied in order: the route rule's, then the gateway rule's."""
        return tuple(r.response_headers for r in (self.rule, self.gateway_rule) if r is not None)

    @property
    def backend(self) -> CompiledBackend | None:
        """The backend this request gets, when that is certain (sticky, or a single one)."""
        return self.backends[0][0] if len(self.backends) == 1 else None


# gRPC status conditions (Istio's retryOn names): a gRPC call (always a POST) is retried on
# them without nonIdempotent, when its answer is trailers-only (see proxy_addon/grpcflow.py).
GRPC_RETRY_CONDITIONS = frozenset({"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"})


def is_grpc_content_type(value: str | None) -> bool:
    """`application/grpc`, `application/grpc+proto`, `application/grpc;...` (not grpc-web)."""
    if not value:
        return False
    ctype = value.lower()
    return ctype == "application/grpc" or ctype.startswith(("application/grpc+", "application/grpc;"))


def is_grpc(headers: Mapping[str, str]) -> bool:
    """Is this request (lower-cased header names) a gRPC call? The sidecar asks the same."""
    return is_grpc_content_type(headers.get("content-type"))


# Failures of a try that never reached the application (Envoy retries them for every method),
# and the `on` conditions that cover them.
NEVER_REACHED = frozenset({"connect-failure", "refused-stream"})
_COVERS_NEVER_REACHED = frozenset({"connect-failure", "refused-stream", "5xx", "gateway-error"})


def retry_unreached_only(policy: RetryPolicy, method: str) -> bool:
    """A non-idempotent request without `nonIdempotent`: retried only after a try that never
    reached the app; a status, a reset or a timeout may mean the app acted on it."""
    return method.upper() not in IDEMPOTENT_METHODS and not policy.non_idempotent


def retry_eligibility(
    policy: RetryPolicy, method: str, body_size: int, grpc: bool = False
) -> tuple[int, str | None]:
    """(retries this request may get, why none when the policy has some).

    A non-idempotent request gets none here; `unreached_retries` says what it still gets after a
    try that never reached the app. A gRPC call gets the policy's attempts on gRPC conditions."""
    if policy.attempts <= 0 or not policy.on:
        return 0, None
    if grpc:
        if GRPC_RETRY_CONDITIONS.intersection(policy.on):
            return policy.attempts, None
        return 0, "a gRPC call is retried on gRPC conditions only (unavailable, cancelled, ...)"
    if body_size > MAX_RETRY_BODY:
        return 0, f"a body over {MAX_RETRY_BODY // 1024} KiB is never retried"
    if retry_unreached_only(policy, method):
        return 0, f"{method.upper()} is not idempotent: retried only with nonIdempotent"
    return policy.attempts, None


def unreached_retries(policy: RetryPolicy, method: str, body_size: int, grpc: bool = False) -> int:
    """Retries after a try that never reached the app (connect-failure, refused-stream): every
    method gets them, as in Envoy, when `on` covers such a failure. A gRPC call's `on` also
    covers it with `unavailable`, the status such a call would otherwise end with (its body is
    kept, or not, by the sidecar's stream copy: no size limit here)."""
    if policy.attempts <= 0:
        return 0
    if grpc and "unavailable" in policy.on:
        return policy.attempts
    if body_size > MAX_RETRY_BODY or not _COVERS_NEVER_REACHED & set(policy.on):
        return 0
    return policy.attempts


def decide(config: SidecarConfig, request: Request) -> Decision:
    if request.inbound:
        return _inbound(config, request)
    view = view_from_target(request.method, request.target, request.headers,
                            request.source_version or None)
    if config.kind == "gateway":
        return _gateway(config, request, view)
    dest = config.destinations.get(request.host)
    if dest is not None:
        return _route(dest, request, view)
    host = request.host
    if host in config.denied:
        refused = AccessDecision(False, None, "refused at the source (no policy admits it)")
        answer = Answer(403, ("RBAC",), reason=f"{config.name} may never call {host}")
        return Decision(request, view, service=host, answer=answer, access=refused)
    if config.outbound_policy == "registry-only":
        reason = f"{host} is not a mesh service (outbound policy registry-only)"
        return Decision(request, view, answer=Answer(502, ("NR",), reason=reason))
    return Decision(request, view, passthrough=True)


def _gateway(config: SidecarConfig, request: Request, view: RequestView) -> Decision:
    gateway = config.gateway
    if request.claims is not None:
        view = replace(view, claims=request.claims)
    host = host_of(request.authority) if request.authority else None
    rules = [r for r in gateway.rules if rule_applies(r, request.listener, host)] if gateway else []
    matched = match_rule(rules, view)
    if matched is None:
        return Decision(request, view, answer=Answer(404, ("NR",), reason="no gateway rule matches"))
    rule, match = matched
    if rule.require_token and request.claims is None:
        answer = Answer(401, ("UAEX",), reason="Jwt is missing")
        return Decision(request, view, gateway_rule=rule, gateway_match=match, answer=answer)
    assert gateway is not None
    decision = _gateway_rule(config, request, view, rule, match)
    policy = rule.cors or (decision.rule.cors if decision.rule else None) or gateway.cors
    if policy is None:
        return decision
    if is_preflight(request.method, request.headers):
        origin = allowed_origin(policy, request.headers)
        if origin is None:
            refused = Answer(403, body="CORS: origin not allowed\n",
                             reason="CORS preflight from an origin the policy does not allow")
            return replace(decision, answer=refused, cors=policy)
        answer = Answer(204, headers=tuple(preflight_headers(policy, origin).items()),
                        reason="CORS preflight answered at the gateway")
        return replace(decision, answer=answer, cors=policy)
    return replace(decision, cors=policy)


def _gateway_rule(
    config: SidecarConfig, request: Request, view: RequestView, rule: CompiledGatewayRule,
    match: RequestMatch | None,
) -> Decision:
    scheme = _scheme(config, request)
    answer = _answers_itself(rule, request, request.authority or "localhost", scheme)
    if answer is not None:
        return Decision(request, view, gateway_rule=rule, gateway_match=match, answer=answer)
    dest = config.destinations.get(rule.service or "")
    if dest is None:
        reason = f"gateway rule {rule.name!r} names no reachable service"
        answer = Answer(502 if rule.service else 404, ("NR",), reason=reason)
        return Decision(
            request, view, service=rule.service, gateway_rule=rule, gateway_match=match, answer=answer
        )
    ops = rule.request_headers
    if ops.remove or ops.set or ops.add:
        request = replace(request, headers=with_ops(request.headers, ops))
        view = replace(view_from_target(request.method, request.target, request.headers),
                       claims=view.claims)
    return _route(dest, request, view, rule, match, scheme)


def _route(
    dest: Destination,
    request: Request,
    view: RequestView,
    gateway_rule: CompiledGatewayRule | None = None,
    gateway_match: RequestMatch | None = None,
    scheme: str = "http",  # the client's, at a gateway
) -> Decision:
    matched = match_rule(dest.rules, view)
    if matched is None:
        no_rule = Answer(404, ("NR",), reason=f"no rule of the {dest.service} route matches")
        return Decision(request, view, dest.service, dest, gateway_rule, None, None, gateway_match, no_rule)
    rule, match = matched
    answer = _answers_itself(rule, request, request.authority or dest.service, scheme)
    if answer is not None:
        return Decision(request, view, dest.service, dest, gateway_rule, rule, match, gateway_match, answer)
    split, weighted = _split(rule)
    key = sticky_key(rule.sticky, view)
    if key is not None:
        backends: tuple[tuple[CompiledBackend, float], ...] = ((pick_sticky(rule.backends, key), 1.0),)
    else:
        backends = weighted
    rewrite = rule.rewrite
    grpc = is_grpc(request.headers)
    attempts, refusal = retry_eligibility(rule.retries, request.method, request.body_size, grpc=grpc)
    return Decision(
        request, view, dest.service, dest, gateway_rule, rule, match, gateway_match,
        split=split,
        backends=backends,
        sticky_key=key,
        upstream_target=rewritten_path(request.target, rewrite, match),
        upstream_host=rewrite.host if rewrite is not None and rewrite.host else None,
        retry_attempts=attempts,
        unreached_retries=unreached_retries(rule.retries, request.method, request.body_size, grpc),
        retry_refusal=refusal,
    )


_Shares = tuple[tuple[CompiledBackend, float], ...]
_SPLITS: dict[int, tuple[CompiledRouteRule, _Shares, _Shares]] = {}


def _split(rule: CompiledRouteRule) -> tuple[_Shares, _Shares]:
    """(every backend's share, those above 0) of a rule: a function of the compiled rule
    alone, so worked out once per rule object (keyed by identity, held with the rule)."""
    found = _SPLITS.get(id(rule))
    if found is None or found[0] is not rule:
        split = tuple(backend_probabilities(rule.backends))
        if len(_SPLITS) >= 4096:
            _SPLITS.clear()  # configs replaced many times: start over rather than grow
        found = _SPLITS[id(rule)] = (rule, split, tuple(bp for bp in split if bp[1] > 0))
    return found[1], found[2]


def _scheme(config: SidecarConfig, request: Request) -> str:
    """The scheme the client used: its gateway listener's protocol (https keeps https in a
    redirect that sets no scheme); behind the edge, sidecars speak plain HTTP."""
    if config.gateway is not None and request.listener is not None:
        for listener in config.gateway.listeners:
            if listener.name == request.listener:
                return listener.protocol
    return "http"


def _answers_itself(
    rule: CompiledRouteRule | CompiledGatewayRule, request: Request, host: str, scheme: str = "http"
) -> Answer | None:
    if rule.redirect is not None:
        location = redirect_location(rule.redirect, request.target, host, scheme)
        return Answer(rule.redirect.status, headers=(("location", location),), reason=f"redirected to {location}")
    if rule.respond is not None:
        respond = rule.respond
        return Answer(respond.status, body=respond.body, headers=tuple(respond.headers.items()),
                      reason="answered by the sidecar (direct response)")
    return None


def _inbound(config: SidecarConfig, request: Request) -> Decision:
    view = None
    service = config.inbound.service if config.inbound else config.name
    if config.mtls == "strict" and request.identity is None:
        # Refused before any policy is read: `access` stays None.
        refusal = Answer(403, ("RBAC",), reason="strict mTLS: the caller presented no mesh certificate")
        return Decision(request, view, service=service, answer=refusal)
    if config.inbound is None:
        return Decision(request, view, service=service)
    verdict = access_verdict(config.inbound.access, request.identity, request.method, request.target,
                             request.principal)
    answer = None if verdict.allowed else Answer(403, ("RBAC",), reason=verdict.reason)
    return Decision(request, view, service=service, answer=answer, access=verdict)
