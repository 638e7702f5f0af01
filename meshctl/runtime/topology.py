"""What the local runtime runs, read from the deployment manifest: app instances and gateways.

Kept as plain JSON-able values so the plan (and the daemon reading it) never needs the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meshctl.defaults import MAX_GATEWAY_WORKERS

if TYPE_CHECKING:  # the supervisor reads topologies from plan.json: no contract models loaded
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
    workers: int = 1  # processes sharing the listen ports ("auto" resolved to this machine's cores)

    def all_listeners(self) -> tuple[ListenerSpec, ...]:
        return self.listeners or (ListenerSpec(name="http", port=self.port),)

    @property
    def sidecar(self) -> str:
        return f"gateway/{self.name}"

    @property
    def instance(self) -> str:
        return f"gateway-{self.name}"

    def worker_instances(self) -> list[str]:
        """The first worker keeps the gateway's own name, so going from one worker to more
        adds processes and restarts none. `_` cannot occur in a policy name: no clash."""
        return [self.instance] + [f"{self.instance}_w{i}" for i in range(1, self.workers)]


def resolve_workers(workers: int | str) -> int:
    """`auto`: the cores this process may run on (its affinity), at most MAX_GATEWAY_WORKERS."""
    if workers == "auto":
        count = getattr(os, "process_cpu_count", os.cpu_count)() or 1
        return max(1, min(count, MAX_GATEWAY_WORKERS))
    return int(workers)


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
            workers=resolve_workers(g.workers),
        )
        for g in manifest.gateways
    )
    return Topology(services=services, gateways=gateways)
