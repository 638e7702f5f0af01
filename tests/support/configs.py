"""Small builders for compiled sidecar configs, so tests read as the policy they exercise."""

from __future__ import annotations

from typing import Any

from meshctl.contract import (
    CompiledBackend,
    CompiledGateway,
    CompiledRouteRule,
    CompiledTrafficPolicy,
    Destination,
    Inbound,
    SidecarConfig,
)

TRUST_DOMAIN = "test.local"


def identity(name: str, kind: str = "service") -> str:
    return f"spiffe://{TRUST_DOMAIN}/{kind}/{name}"


def split(service: str, weights: dict[str, int], name: str = "default", **rule: Any) -> CompiledRouteRule:
    backends = tuple(CompiledBackend(service=service, version=v, weight=w) for v, w in weights.items())
    return CompiledRouteRule(name=name, backends=backends, **rule)


def destination(
    service: str,
    versions: tuple[str, ...] = ("v1",),
    rules: tuple[CompiledRouteRule, ...] | None = None,
    traffic_policy: CompiledTrafficPolicy | None = None,
) -> Destination:
    has_route = rules is not None
    if rules is None:
        rules = (CompiledRouteRule(name="default", backends=(CompiledBackend(service=service, weight=100),)),)
    return Destination(
        service=service,
        identity=identity(service),
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
    return SidecarConfig(
        revision=revision,
        kind="service",
        name=name,
        mesh="test",
        trust_domain=TRUST_DOMAIN,
        identity=identity(name),
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
