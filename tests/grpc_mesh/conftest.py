"""A small gRPC mesh of real processes: grpcio servers behind inbound sidecars, an outbound one.

    inventory v1, v2 : `shop.inventory` (grpc.aio, cleartext HTTP/2) behind strict-mTLS sidecars
    flaky            : `shop.inventory` failing FAIL_PERCENT of calls, its own service
    frontend         : an outbound sidecar; the test process is its app (a grpcio client)

A client reaches `inventory:80` the way the local runtime makes it: through the outbound
listener as its `grpc_proxy` (an HTTP CONNECT tunnel, then cleartext HTTP/2), or with HTTP/2
prior knowledge straight to the listener. Tests install the policy they need with
`mesh.route(...)` (a hot reload), so processes start once per module.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshctl.contract import (
    CompiledRetryBudget,
    CompiledRouteRule,
    CompiledTrafficPolicy,
    Inbound,
    RuntimeBindings,
    TlsFiles,
)
from meshctl.identity import MeshCA, write_sidecar_certs
from shop.grpc_stubs import load
from tests.support.configs import TRUST_DOMAIN, destination, identity, service_config
from tests.support.procs import PYTHON, REPO, Sidecar, bindings_for, free_port, start_sidecar, wait_port

pb, pb_grpc = load("inventory")
_revisions = itertools.count(1)


@dataclass
class GrpcApp:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_grpc_app(service: str, version: str, **env: str) -> GrpcApp:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    environ.update(PORT=str(port), SERVICE=service, VERSION=version, **env)
    proc = subprocess.Popen([PYTHON, "-m", "shop.inventory"], cwd=REPO, env=environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc=proc)
    return GrpcApp(port, proc)


def with_tls(bindings: RuntimeBindings, files: TlsFiles) -> RuntimeBindings:
    return bindings.model_copy(update={"tls": files})


def grpc_destination(service: str, versions: tuple[str, ...], rules: tuple[CompiledRouteRule, ...] | None = None,
                     traffic_policy: CompiledTrafficPolicy | None = None) -> Any:
    dest = destination(service, versions, rules, traffic_policy)
    return dest.model_copy(update={"protocol": "grpc"})


@dataclass
class GrpcMesh:
    root: Path
    apps: dict[str, GrpcApp]
    inbound: dict[str, Sidecar]
    frontend: Sidecar

    @property
    def proxy(self) -> str:
        return f"127.0.0.1:{self.frontend.bindings.listeners.outbound}"

    def channel(self, target: str = "inventory:80") -> grpc.Channel:
        """A channel to `target` through the frontend sidecar, as `grpc_proxy` makes it."""
        return grpc.insecure_channel(target, options=[("grpc.http_proxy", f"http://{self.proxy}"),
                                                      ("grpc.enable_retries", 0)])

    def direct_channel(self, authority: str = "inventory") -> grpc.Channel:
        """Cleartext HTTP/2 with prior knowledge straight to the outbound listener."""
        return grpc.insecure_channel(self.proxy, options=[("grpc.default_authority", authority),
                                                          ("grpc.enable_retries", 0)])

    def route(self, *rules: CompiledRouteRule, inventory_policy: CompiledTrafficPolicy | None = None) -> None:
        dests = (
            grpc_destination("inventory", ("v1", "v2"), rules or None, inventory_policy),
            grpc_destination("flaky", ("v1",)),
        )
        if rules:
            flaky_rules = tuple(r for r in rules if r.backends and r.backends[0].service == "flaky")
            inv_rules = tuple(r for r in rules if r not in flaky_rules)
            dests = (
                grpc_destination("inventory", ("v1", "v2"), inv_rules or None, inventory_policy),
                grpc_destination("flaky", ("v1",), flaky_rules or None),
            )
        # A budget that lets every call of a sequential loop retry (the default allows 20% of
        # requests in flight, at least 10 a second).
        config = service_config("frontend", dests, revision=f"g-{next(_revisions)}", mtls="strict",
                                inbound=None, retry_budget=CompiledRetryBudget(percent=100, min_per_second=1000))
        self.frontend.reload(config, timeout=60)


def inbound_config(service: str) -> Any:
    return service_config(service, revision="g-0", mtls="strict",
                          inbound=Inbound(service=service, protocol="grpc"))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcMesh]:
    root = Path(tmp_path_factory.mktemp("grpcmesh"))
    ca = MeshCA.load_or_create(root / "state" / "ca", TRUST_DOMAIN)
    tls = {name: write_sidecar_certs(ca, identity(name), root / "state" / name / "tls")
           for name in ("inventory", "flaky", "frontend")}
    apps = {
        "inventory-v1": start_grpc_app("inventory", "v1"),
        "inventory-v2": start_grpc_app("inventory", "v2"),
        "flaky-v1": start_grpc_app("flaky", "v1", FAIL_PERCENT="50"),
    }
    started: list[Sidecar] = []
    try:
        inbound: dict[str, Sidecar] = {}
        for key, app in apps.items():
            service, version = key.split("-")
            bindings = bindings_for(outbound=False, app=app.address, version=version, instance=key)
            inbound[key] = start_sidecar(root / key, inbound_config(service),
                                         with_tls(bindings, tls[service]), wait=False)
            started.append(inbound[key])
        endpoints = {
            "inventory": {"v1": (inbound["inventory-v1"].inbound_address,),
                          "v2": (inbound["inventory-v2"].inbound_address,)},
            "flaky": {"v1": (inbound["flaky-v1"].inbound_address,)},
        }
        config = service_config(
            "frontend", (grpc_destination("inventory", ("v1", "v2")), grpc_destination("flaky", ("v1",))),
            revision="g-0", mtls="strict", inbound=None,
        )
        frontend = start_sidecar(root / "frontend", config,
                                 with_tls(bindings_for(inbound=False, endpoints=endpoints), tls["frontend"]),
                                 wait=False)
        started.append(frontend)
        for sidecar in started:
            sidecar.wait_ready(timeout=120)
        yield GrpcMesh(root, apps, inbound, frontend)
    finally:
        codes = [sc.stop() for sc in started]
        for app in apps.values():
            app.stop()
    assert codes == [0] * len(codes), [sc.stderr()[-1500:] for sc in started]
