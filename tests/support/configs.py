"""The one builder of hand-made compiled sidecar configs, so tests read as the policy they exercise.

Two spellings over the same pieces: `service_config(name, (destination(...), ...))` for the
data-plane tests (mesh "test", trust domain test.local, mTLS off), and the terse variadic
`sidecar(name, dest(service, rule(...)), ...)` for diff, explain and decision tests (mesh "shop",
trust domain shop.local, the contract's defaults).
"""

from __future__ import annotations

from typing import Any

from meshctl.contract import (
    Access,
    CompiledAccessPolicy,
    CompiledAccessRule,
    CompiledBackend,
    CompiledGateway,
    CompiledRouteRule,
    CompiledTrafficPolicy,
    Destination,
    Inbound,
    RetryPolicy,
    SidecarConfig,
)

TRUST_DOMAIN = "test.local"
TD = "shop.local"  # of the terse spelling


def identity(name: str, kind: str = "service", trust_domain: str = TRUST_DOMAIN) -> str:
    return f"spiffe://{trust_domain}/{kind}/{name}"


def split(service: str, weights: dict[str, int], name: str = "default", **rule: Any) -> CompiledRouteRule:
    backends = tuple(CompiledBackend(service=service, version=v, weight=w) for v, w in weights.items())
    return CompiledRouteRule(name=name, backends=backends, **rule)


def destination(
    service: str,
    versions: tuple[str, ...] = ("v1",),
    rules: tuple[CompiledRouteRule, ...] | None = None,
    traffic_policy: CompiledTrafficPolicy | None = None,
    trust_domain: str = TRUST_DOMAIN,
) -> Destination:
    has_route = rules is not None
    if rules is None:
        rules = (CompiledRouteRule(name="default", backends=(CompiledBackend(service=service, weight=100),)),)
    return Destination(
        service=service,
        identity=identity(service, trust_domain=trust_domain),
        versions=versions,
        has_route=has_route,
        rules=rules,
        traffic_policy=traffic_policy or CompiledTrafficPolicy(),
    )


def service_config(
    name: str,
    destinations: tuple[Destination, ...] = (),
    revision: str = "r1",
    **fields: Any,
) -> SidecarConfig:
    fields.setdefault("mtls", "disabled")
    fields.setdefault("inbound", Inbound(service=name))
    fields.setdefault("mesh", "test")
    fields.setdefault("trust_domain", TRUST_DOMAIN)
    fields.setdefault("identity", identity(name, trust_domain=fields["trust_domain"]))
    return SidecarConfig(
        revision=revision,
        kind="service",
        name=name,
        destinations={d.service: d for d in destinations},
        **fields,
    )


def gateway_config(
    name: str, gateway: CompiledGateway, destinations: tuple[Destination, ...] = (), revision: str = "r1"
) -> SidecarConfig:
    return SidecarConfig(
        revision=revision,
        kind="gateway",
        name=name,
        mesh="test",
        trust_domain=TRUST_DOMAIN,
        identity=identity(name, "gateway"),
        mtls="disabled",
        gateway=gateway,
        destinations={d.service: d for d in destinations},
    )


# --- the terse spelling ----------------------------------------------------------------------


def sid(name: str) -> str:
    return identity(name, trust_domain=TD)


def rule(name: str, *weights: tuple[str, int], service: str = "reviews", **kw: Any) -> CompiledRouteRule:
    return split(service, dict(weights), name, **kw)


def dest(service: str, *rules: CompiledRouteRule, versions: tuple[str, ...] = ("v1", "v3")) -> Destination:
    return destination(service, versions, rules, trust_domain=TD)


def sidecar(
    name: str, *dests: Destination, access: Access | None = None, revision: str = "r1", **kw: Any
) -> SidecarConfig:
    kw.setdefault("mtls", SidecarConfig.model_fields["mtls"].default)
    return service_config(
        name, dests, revision, mesh="shop", trust_domain=TD,
        inbound=Inbound(service=name, access=access or Access()), **kw,
    )


def allow(name: str, *callers: str, methods: tuple[str, ...] = ()) -> CompiledAccessPolicy:
    sources = tuple(sid(c) for c in callers)
    return CompiledAccessPolicy(name=name, rules=(CompiledAccessRule(sources=sources, methods=methods),))


__all__ = [
    "TD", "TRUST_DOMAIN", "Access", "RetryPolicy", "allow", "dest", "destination", "gateway_config", "identity",
    "rule", "service_config", "sid", "sidecar", "split",
]
