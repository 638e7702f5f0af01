"""AccessPolicy `requestPrincipals` with real parts: a gateway verifies JWTs and calls a
service's sidecar over mesh mTLS (certificates from a real mesh CA); the service admits only
one end user. A forged `x-mesh-request-principal` never passes: not from a client through the
gateway, not from a mesh workload with a valid certificate calling the sidecar directly."""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshctl.contract import Listeners, RuntimeBindings, TlsFiles
from meshctl.identity import MeshCA, dns_name, write_sidecar_certs
from tests.edge.gateway_mesh import AUDIENCE, ISSUER, Keys, Reply, call, compile_gateway, make_keys
from tests.support.procs import App, Sidecar, free_port, start_app, start_sidecar

TRUST = "edge.test"
ALICE = f"{ISSUER}/alice"
HEADER = "x-mesh-request-principal"

POLICY = """apiVersion: meshctl/v1alpha1
kind: Mesh
metadata: {{name: shop}}
spec: {{mtls: strict, trustDomain: {trust}}}
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {{name: shop}}
spec:
  versions: [{{name: v1, run: [app]}}]
---
apiVersion: meshctl/v1alpha1
kind: AccessPolicy
metadata: {{name: shop}}
spec:
  service: shop
  rules:
    - requestPrincipals: ["{alice}"]   # no `from`: only the end user decides
---
apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {{name: edge}}
spec:
  port: {port}
  authentication:
    jwt:
      - {{issuer: "{issuer}", audiences: [{audience}], jwksFile: {jwks}, subjectHeader: x-user}}
  rules:
    - {{name: shop, service: shop}}
"""


@dataclass
class Setup:
    gateway: Sidecar
    service: Sidecar
    app: App
    keys: Keys
    port: int
    intruder: TlsFiles  # a valid mesh certificate of a non-gateway workload
    shop_identity: str

    def via_gateway(self, token: str | None, headers: dict[str, str] | None = None) -> Reply:
        extra = {"authorization": f"Bearer {token}"} if token else {}
        return call(self.port, "shop.example.com", "/orders", headers={**extra, **(headers or {})})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root: Path = tmp_path_factory.mktemp("principals")
    keys = make_keys()
    jwks = root / "jwks.json"
    jwks.write_text(keys.jwks())
    port = free_port()
    configs = compile_gateway(root / "mesh.d", {"mesh.yaml": POLICY.format(
        trust=TRUST, alice=ALICE, port=port, issuer=ISSUER, audience=AUDIENCE, jwks=jwks)})
    ca = MeshCA.load_or_create(root / "ca", TRUST)
    gw_config, shop_config = configs["gateway/edge"], configs["shop"]
    tls = {name: write_sidecar_certs(ca, ident, root / "tls" / name) for name, ident in (
        ("gateway", gw_config.identity), ("shop", shop_config.identity),
        ("intruder", f"spiffe://{TRUST}/service/intruder"))}
    app = start_app("shop")
    service = start_sidecar(root / "shop", shop_config, RuntimeBindings(
        version="v1", instance="shop-v1-0", app=app.address, tls=tls["shop"],
        listeners=Listeners(inbound=free_port(), outbound=free_port(), admin=free_port()),
        endpoints={"shop": {"v1": ()}}), wait=False)
    gateway = start_sidecar(root / "gateway", gw_config, RuntimeBindings(
        instance="gateway-edge", tls=tls["gateway"], listeners=Listeners(admin=free_port()),
        endpoints={"shop": {"v1": (service.inbound_address,)}}), wait=False)
    started = (service, gateway)
    try:
        for sidecar in started:
            sidecar.wait_ready(timeout=120)
        yield Setup(gateway, service, app, keys, port, tls["intruder"], shop_config.identity)
    finally:
        codes = [sc.stop() for sc in started]
        app.stop()
    assert codes == [0, 0], [sc.stderr()[-1500:] for sc in started]


def direct(setup: Setup, files: TlsFiles, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """Straight to the service sidecar's inbound listener, over mTLS with `files`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(files.ca_file)
    ctx.load_cert_chain(files.cert_file, files.key_file)
    host, _, port = setup.service.inbound_address.rpartition(":")
    raw = socket.create_connection((host, int(port)), timeout=10)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.sock = ctx.wrap_socket(raw, server_hostname=dns_name(setup.shop_identity))
        conn.request("GET", "/orders", headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
        raw.close()


def test_the_admitted_principal_passes_and_the_app_never_sees_the_header(setup: Setup) -> None:
    reply = setup.via_gateway(setup.keys.token(sub="alice"))
    assert reply.status == 200, reply.body
    seen = {k.lower(): v for k, v in reply.json()["headers"].items()}
    assert HEADER not in seen and seen["x-user"] == "alice"
    # it went over mTLS: the app sees the gateway's verified identity
    assert f"URI=spiffe://{TRUST}/gateway/edge" in seen["x-forwarded-client-cert"], seen


def test_another_principal_or_no_token_is_403_rbac(setup: Setup) -> None:
    for token in (setup.keys.token(sub="bob"), None):
        reply = setup.via_gateway(token)
        assert reply.status == 403, reply.body
        assert reply.headers.get("x-mesh-response-flags") == "RBAC", reply.headers


def test_a_forged_principal_header_through_the_gateway_does_not_pass(setup: Setup) -> None:
    for token in (setup.keys.token(sub="bob"), None):
        reply = setup.via_gateway(token, headers={HEADER: ALICE})
        assert reply.status == 403, reply.body


def test_a_forged_principal_header_from_a_mesh_workload_does_not_pass(setup: Setup) -> None:
    before = setup.app.stats()["requests"]
    status, headers, body = direct(setup, setup.intruder, {HEADER: ALICE})
    assert status == 403, body
    assert headers.get("x-mesh-response-flags") == "RBAC", headers
    assert setup.app.stats()["requests"] == before  # the app was not reached
