"""Edge pieces of the compiled config: gateway listeners, JWT providers, client limits, TLS
origination to external endpoints (pure conversions, as in convert.py)."""

from __future__ import annotations

from meshctl.contract import (
    CompiledCertificate,
    CompiledClientRateLimit,
    CompiledJwtProvider,
    CompiledOriginationTls,
    GatewayListener,
)
from meshctl.model.gateway import GatewaySpec
from meshctl.model.mesh import connection_limits
from meshctl.model.service import ServiceSpec
from meshctl.model.values import ConnectionSettings


def listeners(spec: GatewaySpec, mesh_defaults: ConnectionSettings | None) -> tuple[GatewayListener, ...]:
    """The old single `port` form is one plain-HTTP listener for every host."""
    if spec.listeners is None:
        return (GatewayListener(name="http", port=spec.primary_port,
                                connections=connection_limits(spec.connections, mesh_defaults)),)
    return tuple(
        GatewayListener(
            name=listener.name, port=listener.port, protocol=listener.protocol,
            hosts=tuple(listener.hosts or ()),
            certificates=tuple(
                CompiledCertificate(cert_file=cert.cert_file, key_file=cert.key_file)
                for cert in (listener.tls.certificates if listener.tls else ())),
            connections=connection_limits(listener.connections, spec.connections, mesh_defaults),
        )
        for listener in spec.listeners
    )


def jwt_providers(spec: GatewaySpec) -> tuple[CompiledJwtProvider, ...]:
    providers = spec.authentication.jwt if spec.authentication else []
    return tuple(
        CompiledJwtProvider(
            issuer=p.issuer, audiences=tuple(p.audiences or ()), jwks_file=p.jwks_file,
            jwks_uri=p.jwks_uri, refresh_ms=p.refresh,
            subject_header=p.subject_header.lower() if p.subject_header else None,
            forward_original_token=p.forward_original_token,
        )
        for p in providers
    )


def client_rate_limit(spec: GatewaySpec) -> CompiledClientRateLimit | None:
    rate = spec.rate_limit
    if rate is None:
        return None
    key: str = "client-address"
    name: str | None = None
    if rate.key is not None and rate.key.header is not None:
        key, name = "header", rate.key.header.lower()
    elif rate.key is not None and rate.key.claim is not None:
        key, name = "claim", rate.key.claim
    return CompiledClientRateLimit(
        requests_per_second=rate.requests_per_second,
        burst=rate.burst if rate.burst is not None else max(1, int(rate.requests_per_second)),
        key=key,  # type: ignore[arg-type]
        name=name,
    )


def origination(spec: ServiceSpec) -> dict[str, CompiledOriginationTls]:
    return {
        v.name: CompiledOriginationTls(sni=v.tls.sni, ca_file=v.tls.ca_file)
        for v in spec.versions if v.tls is not None
    }
