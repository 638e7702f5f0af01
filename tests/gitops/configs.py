"""Hand-made compiled configs for diff tests: small builders with the fields tests change."""

from __future__ import annotations

from meshctl.contract import (
    Access,
    CompiledAccessPolicy,
    CompiledAccessRule,
    CompiledBackend,
    CompiledRouteRule,
    Destination,
    Inbound,
    RetryPolicy,
    SidecarConfig,
)

TD = "shop.local"


def sid(name: str) -> str:
    return f"spiffe://{TD}/service/{name}"


def rule(name: str, *weights: tuple[str, int], service: str = "reviews", **kw: object) -> CompiledRouteRule:
    backends = tuple(CompiledBackend(service=service, version=v, weight=w) for v, w in weights)
    return CompiledRouteRule(name=name, backends=backends, **kw)  # type: ignore[arg-type]


def dest(service: str, *rules: CompiledRouteRule, versions: tuple[str, ...] = ("v1", "v3")) -> Destination:
    return Destination(service=service, identity=sid(service), versions=versions, has_route=True, rules=rules)


def sidecar(
    name: str, *dests: Destination, access: Access | None = None, revision: str = "r1", **kw: object
) -> SidecarConfig:
    return SidecarConfig(
        revision=revision,
        kind="service",
        name=name,
        mesh="shop",
        trust_domain=TD,
        identity=sid(name),
        inbound=Inbound(service=name, access=access or Access()),
        destinations={d.service: d for d in dests},
        **kw,  # type: ignore[arg-type]
    )


def allow(name: str, *callers: str, methods: tuple[str, ...] = ()) -> CompiledAccessPolicy:
    sources = tuple(sid(c) for c in callers)
    return CompiledAccessPolicy(name=name, rules=(CompiledAccessRule(sources=sources, methods=methods),))


__all__ = ["Access", "RetryPolicy", "allow", "dest", "rule", "sid", "sidecar"]
