"""gRPC through a Gateway: grpcio clients on its HTTP listener (h2c, prior knowledge) and its
HTTPS listener (ALPN h2), routed by method path to a gRPC mesh service over mTLS."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from meshctl.contract import (
    CompiledBackend,
    CompiledCertificate,
    CompiledGateway,
    CompiledGatewayRule,
    CompiledRouteRule,
    CompiledStringMatch,
    GatewayListener,
    Listeners,
    RequestMatch,
    RuntimeBindings,
)
from meshctl.identity import MeshCA, write_sidecar_certs
from tests.edge.pki import CertAuthority, make_ca
from tests.grpc_mesh.conftest import GrpcMesh, grpc_destination, pb, pb_grpc
from tests.support.configs import TRUST_DOMAIN, gateway_config, identity
from tests.support.procs import Sidecar, free_port, start_sidecar

pytestmark = pytest.mark.slow

SERVICE = "/shop.inventory.v1.Inventory/"
CHECK = SERVICE + "Check"
HOST = "grpc.example.com"


@dataclass
class Gateway:
    sidecar: Sidecar
    http_port: int
    https_port: int
    ca: CertAuthority


@pytest.fixture(scope="module")
def gateway(mesh: GrpcMesh) -> Iterator[Gateway]:
    root = mesh.root / "gateway"
    ca = make_ca(root / "pki")
    ca.issue([HOST], root / "pki" / "grpc.crt", root / "pki" / "grpc.key")
    http_port, https_port = free_port(), free_port()
    by_method = (  # the service's own route: Check to v1, every other method to v2
        CompiledRouteRule(name="check", matches=(RequestMatch(path=CompiledStringMatch(exact=CHECK)),),
                          backends=(CompiledBackend(service="inventory", version="v1", weight=100),)),
        CompiledRouteRule(name="rest", backends=(CompiledBackend(service="inventory", version="v2", weight=100),)),
    )
    spec = CompiledGateway(
        name="public", port=http_port,
        listeners=(GatewayListener(name="web", port=http_port),
                   GatewayListener(name="secure", port=https_port, protocol="https", certificates=(
                       CompiledCertificate(cert_file=str(root / "pki" / "grpc.crt"),
                                           key_file=str(root / "pki" / "grpc.key")),))),
        rules=(CompiledGatewayRule(name="inventory", service="inventory",
                                   matches=(RequestMatch(path=CompiledStringMatch(prefix=SERVICE)),)),),
    )
    config = gateway_config("public", spec, (grpc_destination("inventory", ("v1", "v2"), by_method),))
    config = config.model_copy(update={"mtls": "strict"})
    mesh_ca = MeshCA.load_or_create(mesh.root / "state" / "ca", TRUST_DOMAIN)
    tls = write_sidecar_certs(mesh_ca, identity("public", "gateway"), root / "tls")
    bindings = RuntimeBindings(
        instance="gateway-public", listeners=Listeners(admin=free_port()), tls=tls,
        endpoints={"inventory": {"v1": (mesh.inbound["inventory-v1"].inbound_address,),
                                 "v2": (mesh.inbound["inventory-v2"].inbound_address,)}},
    )
    sidecar = start_sidecar(root / "sidecar", config, bindings)
    yield Gateway(sidecar, http_port, https_port, ca)
    assert sidecar.stop() == 0, sidecar.stderr()[-2000:]


def every_kind(channel: grpc.Channel) -> None:
    stub = pb_grpc.InventoryStub(channel)
    reply, call = stub.Check.with_call(pb.StockRequest(item="1"), timeout=10)
    assert (reply.available, reply.version) == (12, "v1")
    assert ("x-inventory-version", "v1") in call.trailing_metadata()
    watched = list(stub.Watch(pb.StockRequest(item="2", updates=3), timeout=10))
    assert [(s.seq, s.version) for s in watched] == [(0, "v2"), (1, "v2"), (2, "v2")]
    receipt = stub.Reserve(iter([pb.StockRequest(item="1", quantity=q) for q in (1, 2)]), timeout=10)
    assert (receipt.items, receipt.quantity, receipt.version) == (2, 3, "v2")
    assert [s.seq for s in stub.Trade(iter([pb.StockRequest(item="3")] * 3), timeout=10)] == [0, 1, 2]


def test_grpc_on_the_http_listener_with_prior_knowledge(gateway: Gateway) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{gateway.http_port}",
                                    options=[("grpc.default_authority", HOST), ("grpc.enable_retries", 0)])
    every_kind(channel)
    # A method no gateway rule matches: UNIMPLEMENTED from the gateway, flagged NR.
    other = channel.unary_unary("/other.v1.Nope/Call", request_serializer=lambda b: b,
                                response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as caught:
        other(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert ("x-mesh-response-flags", "NR") in caught.value.trailing_metadata()
    channel.close()
    log = [e for e in gateway.sidecar.access_log() if e.get("path") == CHECK]
    assert log and (log[-1]["route_name"], log[-1]["grpc_status"], log[-1]["version"]) == ("inventory/check", "0", "v1")


def test_grpc_on_the_https_listener_with_alpn_h2(gateway: Gateway) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=gateway.ca.path.read_bytes())
    channel = grpc.secure_channel(f"127.0.0.1:{gateway.https_port}", credentials,
                                  options=[("grpc.ssl_target_name_override", HOST),
                                           ("grpc.default_authority", HOST), ("grpc.enable_retries", 0)])
    every_kind(channel)
    channel.close()
