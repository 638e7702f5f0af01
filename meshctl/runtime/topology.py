"""What the local runtime runs, read from the deployment manifest: app instances and gateways.

Kept as plain JSON-able values so the plan (and the daemon reading it) never needs the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshctl.contract import DeploymentManifest


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
class ListenerSpec:
    name: str
    port: int  # as declared
    protocol: str = "http"


@dataclass(frozen=True)
class GatewaySpec:
    name: str
    port: int  # the first listener's
    listeners: tuple[ListenerSpec, ...] = ()  # empty (older plans): one http listener on `port`

    def all_listeners(self) -> tuple[ListenerSpec, ...]:
        return self.listeners or (ListenerSpec(name="http", port=self.port),)

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


def topology_of(manifest: DeploymentManifest) -> Topology:
    services = tuple(
        ServiceSpec(
            name=svc.name, protocol=svc.protocol, health_path=svc.health_path,
            versions=tuple(
                VersionSpec(
                    service=svc.name, version=v.name, replicas=v.replicas, run=v.run,
                    env=dict(v.env), endpoints=v.endpoints,
                )
                for v in svc.versions
            ),
        )
        for svc in manifest.services
    )
    gateways = tuple(
        GatewaySpec(
            name=g.name, port=g.port,
            listeners=tuple(ListenerSpec(lst.name, lst.port, lst.protocol) for lst in g.listeners),
        )
        for g in manifest.gateways
    )
    return Topology(services=services, gateways=gateways)
