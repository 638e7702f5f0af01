"""What the local runtime runs, read from the typed policy: app instances and gateways.

Kept as plain JSON-able values so the plan (and the daemon reading it) never needs the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshctl.model import MeshPolicy


@dataclass(frozen=True)
class VersionSpec:
    service: str
    version: str
    replicas: int
    run: tuple[str, ...] | None
    env: dict[str, str] = field(default_factory=dict)
    endpoints: tuple[str, ...] = ()  # static endpoints, when there is no `run`

    def instance_names(self) -> list[str]:
        if not self.run:
            return []
        return [f"{self.service}-{self.version}-{i}" for i in range(self.replicas)]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    protocol: str
    health_path: str | None
    versions: tuple[VersionSpec, ...]


@dataclass(frozen=True)
class GatewaySpec:
    name: str
    port: int

    @property
    def sidecar(self) -> str:
        return f"gateway/{self.name}"

    @property
    def instance(self) -> str:
        return f"gateway-{self.name}"


@dataclass(frozen=True)
class Topology:
    services: tuple[ServiceSpec, ...]
    gateways: tuple[GatewaySpec, ...]

    def versions(self) -> list[VersionSpec]:
        return [v for s in self.services for v in s.versions]


def topology_of(policy: MeshPolicy) -> Topology:
    services = []
    for located in policy.services:
        svc = located.obj
        name = svc.metadata.name
        versions = tuple(
            VersionSpec(
                service=name,
                version=v.name,
                replicas=v.replicas,
                run=tuple(v.run) if v.run else None,
                env=dict(v.env or {}),
                endpoints=tuple(v.endpoints or ()),
            )
            for v in svc.spec.versions
        )
        health = svc.spec.health_check.path if svc.spec.health_check else None
        services.append(
            ServiceSpec(
                name=name, protocol=svc.spec.protocol, health_path=health, versions=versions
            )
        )
    gateways = tuple(
        GatewaySpec(name=g.obj.metadata.name, port=g.obj.spec.primary_port) for g in policy.gateways
    )
    return Topology(services=tuple(services), gateways=gateways)
