"""Typed policy -> one SidecarConfig per service and per gateway (pure functions).

Everything the addon needs is decided here: Mesh defaults applied, durations in ms, route rules
filtered for the calling sidecar (`match.from`), access sources spelled as SPIFFE IDs, and
destinations this caller can never be admitted to pruned into `denied`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from meshctl.compile import convert, edge
from meshctl.compile import telemetry as labels
from meshctl.compile.identity import DEFAULT_TRUST_DOMAIN, Admission, admission, source_identity
from meshctl.contract import (
    Access,
    CompiledAccessPolicy,
    CompiledAccessRule,
    CompiledBackend,
    CompiledBackoff,
    CompiledConnectionPool,
    CompiledGateway,
    CompiledGatewayRule,
    CompiledHealthCheck,
    CompiledMirror,
    CompiledOutlierDetection,
    CompiledRateLimit,
    CompiledRetryBudget,
    CompiledRouteRule,
    CompiledStickyCookie,
    CompiledTelemetry,
    CompiledTrafficPolicy,
    Destination,
    Inbound,
    LoadBalancer,
    RetryPolicy,
    ServiceLabels,
    SidecarConfig,
    dump_json,
)
from meshctl.model import AccessPolicy, Gateway, MeshPolicy, Route, Service
from meshctl.model.mesh import MeshSpec, connection_limits, effective_timeout_ms
from meshctl.model.route import HeaderRules, Retries, RouteRule
from meshctl.model.service import HashBalancer
from meshctl.model.values import ConnectionSettings

DEFAULT_MESH_NAME = "mesh"
# As Istio's default retry policy, connection-level failures only: safe for every method.
DEFAULT_RETRY_ON = ("connect-failure", "refused-stream")
DEFAULT_RETRY_ATTEMPTS = 2


@dataclass
class Compilation:
    """One run of the compiler: the sidecar configs and the policy they came from.

    Not what downstream reads: `compile.output.compiled_mesh()` makes the `CompiledMesh`
    (manifest + config bytes, `meshctl/compiled.py`) from it; the policy stays here, for the
    manifest and for a re-compile into another namespace.
    """

    revision: str
    source_digest: str
    configs: dict[str, SidecarConfig]  # "reviews", "gateway/public"
    policy: MeshPolicy = field(repr=False)
    namespace: str = "default"  # Mesh.spec.namespace, or the override compiled for

    def rendered(self) -> dict[str, str]:
        """Sidecar name -> canonical JSON text (what is written and hashed)."""
        return {name: dump_json(cfg) for name, cfg in sorted(self.configs.items())}


# --- mesh-wide context ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    policy: MeshPolicy
    mesh_name: str
    mesh: MeshSpec
    trust_domain: str
    services: dict[str, Service]
    access_by_service: dict[str, list[AccessPolicy]]
    routes: dict[str, Route]
    revision: str
    admissions: dict[str, Admission]
    open_services: tuple[str, ...]  # services every (unblocked) caller may reach
    admitted_by_name: dict[str, set[str]]  # caller -> services whose policies name it
    service_names: tuple[str, ...]  # sorted
    destination_cache: dict[tuple[str, str], Destination] = field(default_factory=dict)

    def identity(self, source: str) -> str:
        return source_identity(self.trust_domain, source)


def _context(policy: MeshPolicy, revision: str, namespace: str | None = None) -> _Context:
    mesh_obj = policy.mesh
    spec = mesh_obj.spec if mesh_obj else MeshSpec()
    if namespace is not None:
        spec = spec.model_copy(update={"namespace": namespace})
    access: dict[str, list[AccessPolicy]] = defaultdict(list)
    for loc in policy.access_policies:
        access[loc.obj.spec.service].append(loc.obj)
    services = {loc.obj.metadata.name: loc.obj for loc in policy.services}
    admissions = {
        name: admission(access.get(name, []), spec.access_default, has_identity=spec.mtls != "disabled")
        for name in services
    }
    admitted_by_name: dict[str, set[str]] = defaultdict(set)
    for name, adm in admissions.items():
        for caller in adm.allowed:
            admitted_by_name[caller].add(name)
    return _Context(
        policy=policy,
        mesh_name=mesh_obj.metadata.name if mesh_obj else DEFAULT_MESH_NAME,
        mesh=spec,
        trust_domain=spec.trust_domain or DEFAULT_TRUST_DOMAIN,
        services=services,
        access_by_service=access,
        routes={loc.obj.spec.service: loc.obj for loc in reversed(policy.routes)},
        revision=revision,
        admissions=admissions,
        open_services=tuple(name for name, adm in sorted(admissions.items()) if adm.open_to_all),
        admitted_by_name=admitted_by_name,
        service_names=tuple(sorted(services)),
    )


# --- defaults ------------------------------------------------------------------------------


def _retries(ctx: _Context, own: Retries | None) -> RetryPolicy:
    """Rule fields win, then the Mesh defaults' fields, then the built-in defaults."""
    default = ctx.mesh.defaults.retries if ctx.mesh.defaults else None

    def pick(name: str, builtin: object) -> object:
        for source in (own, default):
            if source is not None and name in source.model_fields_set:
                return getattr(source, name)
        return builtin

    backoff = pick("backoff", None)
    return RetryPolicy(
        attempts=pick("attempts", DEFAULT_RETRY_ATTEMPTS),  # type: ignore[arg-type]
        per_try_timeout_ms=pick("per_try_timeout", None),  # type: ignore[arg-type]
        on=tuple(pick("on", DEFAULT_RETRY_ON)),  # type: ignore[arg-type]
        backoff=CompiledBackoff(base_ms=backoff.base, max_ms=backoff.max) if backoff else CompiledBackoff(),  # type: ignore[attr-defined]
        non_idempotent=pick("non_idempotent", False),  # type: ignore[arg-type]
    )


def _timeout(ctx: _Context, own: int | str | None) -> int | None:
    return effective_timeout_ms(own, ctx.mesh.defaults)


# --- destinations --------------------------------------------------------------------------


def _route_rule(ctx: _Context, caller: str, service: str, rule: RouteRule) -> CompiledRouteRule | None:
    matches = convert.matches_for(caller, rule.match)
    if matches is None:
        return None
    backends = tuple(
        CompiledBackend(service=b.service or service, version=b.version,
                        weight=b.weight if b.weight is not None else 100,
                        request_headers=convert.header_ops(b.headers.request if b.headers else None),
                        response_headers=convert.header_ops(b.headers.response if b.headers else None))
        for b in rule.backends or ()
    )
    mirror = None
    if rule.mirror is not None:
        mirror = CompiledMirror(service=rule.mirror.service or service, version=rule.mirror.version,
                          percent=rule.mirror.percent)
    headers = rule.headers or HeaderRules()
    return CompiledRouteRule(
        name=rule.name,
        matches=matches,
        backends=backends,
        redirect=convert.redirect(rule.redirect),
        respond=convert.respond(rule.respond),
        sticky=convert.sticky(rule.sticky),
        timeout_ms=_timeout(ctx, rule.timeout),
        retries=_retries(ctx, rule.retries),
        fault=convert.fault(rule.fault),
        mirror=mirror,
        rewrite=convert.rewrite(rule.rewrite),
        request_headers=convert.header_ops(headers.request),
        response_headers=convert.header_ops(headers.response),
        cors=convert.cors(rule.cors),
    )


def _implicit_rule(ctx: _Context, service: str) -> CompiledRouteRule:
    return CompiledRouteRule(
        name="default",
        backends=(CompiledBackend(service=service, version=None, weight=100),),
        timeout_ms=_timeout(ctx, None),
        retries=_retries(ctx, None),
    )


def _traffic_policy(svc: Service) -> CompiledTrafficPolicy:
    tp = svc.spec.traffic_policy
    hc = svc.spec.health_check
    health = (
        CompiledHealthCheck(path=hc.path, interval_ms=hc.interval, timeout_ms=hc.timeout,
                      unhealthy_threshold=hc.unhealthy_threshold, healthy_threshold=hc.healthy_threshold)
        if hc else None
    )
    if tp is None:
        return CompiledTrafficPolicy(health_check=health)
    if isinstance(tp.load_balancer, HashBalancer):
        on = tp.load_balancer.hash
        cookie = CompiledStickyCookie(name=on.cookie.name, ttl_ms=on.cookie.ttl) if on.cookie else None
        lb = LoadBalancer(policy="hash", hash_header=on.header.lower() if on.header else None,
                            hash_cookie=cookie)
    else:
        lb = LoadBalancer(policy=tp.load_balancer)
    pool = tp.connection_pool
    od = tp.outlier_detection
    return CompiledTrafficPolicy(
        load_balancer=lb,
        connection_pool=CompiledConnectionPool(
            max_connections=pool.max_connections, max_pending_requests=pool.max_pending_requests,
            max_requests=pool.max_requests) if pool else None,
        outlier_detection=CompiledOutlierDetection(
            consecutive_5xx=od.consecutive_5xx, interval_ms=od.interval,
            base_ejection_time_ms=od.base_ejection_time,
            max_ejection_percent=od.max_ejection_percent) if od else None,
        health_check=health,
    )


def _destination(ctx: _Context, caller: str, svc: Service) -> Destination:
    """The destination as `caller` sees it; shared between callers unless `match.from` differs."""
    name = svc.metadata.name
    route = ctx.routes.get(name)
    depends_on_caller = route is not None and any(
        m.from_ is not None for rule in route.spec.rules for m in rule.match or ())
    key = (name, caller if depends_on_caller else "")
    if key not in ctx.destination_cache:
        ctx.destination_cache[key] = _build_destination(ctx, caller, svc, route)
    return ctx.destination_cache[key]


def _build_destination(ctx: _Context, caller: str, svc: Service, route: Route | None) -> Destination:
    name = svc.metadata.name
    if route is None:
        rules: tuple[CompiledRouteRule, ...] = (_implicit_rule(ctx, name),)
    else:
        compiled = (_route_rule(ctx, caller, name, rule) for rule in route.spec.rules)
        rules = tuple(rule for rule in compiled if rule is not None)
    return Destination(
        service=name,
        protocol=svc.spec.protocol,
        identity=ctx.identity(name),
        versions=tuple(v.name for v in svc.spec.versions),
        has_route=route is not None,
        rules=rules,
        traffic_policy=_traffic_policy(svc),
        labels=_service_labels(ctx, svc),
        origination=edge.origination(svc.spec),
    )


def _service_labels(ctx: _Context, svc: Service) -> ServiceLabels:
    return labels.service_labels(
        ctx.mesh, ctx.trust_domain, svc.metadata.name, tuple(v.name for v in svc.spec.versions))


def _outbound(ctx: _Context, caller: str) -> tuple[dict[str, Destination], tuple[str, ...]]:
    """Destinations `caller` may reach, and the mesh services it can never be admitted to."""
    reachable = {name for name in ctx.open_services if ctx.admissions[name].admits(caller)}
    reachable |= {name for name in ctx.admitted_by_name.get(caller, ()) if ctx.admissions[name].admits(caller)}
    # A split or mirror may send to another service: keep what the reachable routes point at.
    pending = sorted(reachable)
    tables: dict[str, Destination] = {}
    while pending:
        name = pending.pop()
        tables[name] = dest = _destination(ctx, caller, ctx.services[name])
        for rule in dest.rules:
            targets = [b.service for b in rule.backends] + ([rule.mirror.service] if rule.mirror else [])
            for target in targets:
                if target not in reachable and target in ctx.services:
                    reachable.add(target)
                    pending.append(target)
    denied = tuple(name for name in ctx.service_names if name not in reachable)
    return dict(sorted(tables.items())), denied


# --- inbound and gateways ------------------------------------------------------------------


def _access(ctx: _Context, service: str) -> Access:
    policies = sorted(ctx.access_by_service.get(service, []), key=lambda p: p.metadata.name)
    return Access(
        default=ctx.mesh.access_default,
        policies=tuple(
            CompiledAccessPolicy(
                name=p.metadata.name,
                action=p.spec.action,
                rules=tuple(
                    CompiledAccessRule(
                        sources=None if rule.from_ is None else tuple(
                            s if s == "*" else ctx.identity(s) for s in rule.from_),
                        methods=tuple(rule.methods or ()),
                        paths=tuple(rule.paths or ()),
                        request_principals=tuple(rule.request_principals)
                        if rule.request_principals is not None else None,
                    )
                    for rule in p.spec.rules
                ),
            )
            for p in policies
        ),
    )


def _inbound(ctx: _Context, svc: Service) -> Inbound:
    tp = svc.spec.traffic_policy
    rate = tp.rate_limit if tp else None
    return Inbound(
        service=svc.metadata.name,
        protocol=svc.spec.protocol,
        access=_access(ctx, svc.metadata.name),
        rate_limit=CompiledRateLimit(
            requests_per_second=rate.requests_per_second,
            burst=rate.burst if rate.burst is not None else max(1, int(rate.requests_per_second)),
        ) if rate else None,
        health_check=_traffic_policy(svc).health_check,
    )


def _gateway(ctx: _Context, gw: Gateway) -> CompiledGateway:
    rules = []
    for rule in gw.spec.rules:
        headers = rule.headers or HeaderRules()
        rules.append(CompiledGatewayRule(
            name=rule.name,
            matches=tuple(convert.request_match(m) for m in rule.match or ()),
            service=rule.service,
            redirect=convert.redirect(rule.redirect),
            respond=convert.respond(rule.respond),
            request_headers=convert.header_ops(headers.request),
            response_headers=convert.header_ops(headers.response),
            hosts=tuple(rule.hosts or ()),
            listeners=tuple(rule.listeners or ()),
            require_token=rule.require_token,
            cors=convert.cors(rule.cors),
        ))
    return CompiledGateway(
        name=gw.metadata.name, port=gw.spec.primary_port, rules=tuple(rules),
        listeners=edge.listeners(gw.spec, _mesh_connections(ctx)), jwt=edge.jwt_providers(gw.spec),
        cors=convert.cors(gw.spec.cors), rate_limit=edge.client_rate_limit(gw.spec),
        workers=gw.spec.workers,
    )


def _mesh_connections(ctx: _Context) -> ConnectionSettings | None:
    return ctx.mesh.defaults.connections if ctx.mesh.defaults else None


def _telemetry(ctx: _Context, kind: str, name: str) -> CompiledTelemetry:
    telemetry = ctx.mesh.telemetry
    tracing = telemetry.tracing if telemetry else None
    rotation = telemetry.access_log_rotation if telemetry else None
    if kind == "gateway":
        own = labels.gateway_labels(ctx.mesh, ctx.trust_domain, name)
    else:
        own = _service_labels(ctx, ctx.services[name])
    return CompiledTelemetry(
        access_log=telemetry.access_log if telemetry else "json",
        access_log_max_bytes=rotation.max_bytes if rotation else CompiledTelemetry().access_log_max_bytes,
        access_log_keep=rotation.keep if rotation else CompiledTelemetry().access_log_keep,
        tracing_sampling=tracing.sampling if tracing else 1.0,
        otlp_endpoint=tracing.otlp if tracing else None,
        namespace=ctx.mesh.namespace,
        cluster=ctx.mesh.cluster,
        labels=own,
    )


def _base(ctx: _Context, kind: str, name: str, source: str) -> dict[str, object]:
    mesh = ctx.mesh
    defaults = mesh.defaults
    budget = defaults.retry_budget if defaults and defaults.retry_budget else None
    destinations, denied = _outbound(ctx, source)
    return dict(
        revision=ctx.revision,
        kind=kind,
        name=name,
        mesh=ctx.mesh_name,
        trust_domain=ctx.trust_domain,
        identity=ctx.identity(source),
        mtls=mesh.mtls,
        outbound_policy=mesh.outbound_policy,
        retry_budget=CompiledRetryBudget(percent=budget.percent, min_per_second=budget.min_per_second)
        if budget else CompiledRetryBudget(),
        telemetry=_telemetry(ctx, kind, name),
        destinations=destinations,
        denied=denied,
    )


def compile_policy(
    policy: MeshPolicy, *, revision: str, source_digest: str, namespace: str | None = None
) -> Compilation:
    """Compile a policy that passed validation. Pure: same input, same output.

    `namespace` overrides Mesh.spec.namespace (`render kubernetes --namespace`)."""
    ctx = _context(policy, revision, namespace)
    configs: dict[str, SidecarConfig] = {}
    for name, svc in sorted(ctx.services.items()):
        configs[name] = SidecarConfig(
            **_base(ctx, "service", name, name),  # type: ignore[arg-type]
            inbound=_inbound(ctx, svc),
            connections=connection_limits(svc.spec.connections, _mesh_connections(ctx)),
        )
    for loc in policy.gateways:
        gw = loc.obj
        source = f"gateway/{gw.metadata.name}"
        configs[source] = SidecarConfig(
            **_base(ctx, "gateway", gw.metadata.name, source),  # type: ignore[arg-type]
            gateway=_gateway(ctx, gw),
            connections=connection_limits(gw.spec.connections, _mesh_connections(ctx)),
        )
    return Compilation(revision=revision, source_digest=source_digest, configs=configs,
                        policy=policy, namespace=ctx.mesh.namespace)
