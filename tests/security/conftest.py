"""A small mTLS mesh of real processes, shared by the tests of one module.

    reviews  : inbound sidecar (strict mTLS, access policy) in front of a real app
    productpage, ratings : outbound sidecars (explicit HTTP proxies) that call reviews

Every sidecar has its own certificate files, issued by a CA in a temp state directory, and
reads them the way `meshctl up` lays them out. Tests install the policy they need with
`mesh.set_reviews(...)` (a hot reload), so processes start once per module.
"""

from __future__ import annotations

import http.client
import itertools
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from meshctl.contract import (
    Access,
    CompiledAccessPolicy,
    CompiledAccessRule,
    CompiledGateway,
    CompiledGatewayRule,
    Inbound,
    RuntimeBindings,
    SidecarConfig,
    TlsFiles,
)
from meshctl.identity import MeshCA, dns_name, write_sidecar_certs
from tests.support.configs import (
    TRUST_DOMAIN,
    destination,
    gateway_config,
    identity,
    service_config,
)
from tests.support.procs import App, Sidecar, bindings_for, start_app, start_sidecar

_revisions = itertools.count(1)

CALLERS = CompiledAccessPolicy(
    name="callers", action="allow", rules=(CompiledAccessRule(sources=(identity("productpage"),)),)
)
PUBLIC = CompiledAccessPolicy(name="public", action="allow", rules=(CompiledAccessRule(paths=("/public*",)),))
NO_ADMIN = CompiledAccessPolicy(
    name="no-admin", action="deny", rules=(CompiledAccessRule(sources=("*",), paths=("/admin*",)),)
)
EDGE = CompiledAccessPolicy(
    name="edge", action="allow",
    rules=(CompiledAccessRule(sources=(identity("public", "gateway"),), paths=("/shop*",)),),
)
POLICIES = (NO_ADMIN, CALLERS, PUBLIC, EDGE)


@dataclass
class Mesh:
    root: Path
    ca: MeshCA
    app: App
    reviews: Sidecar
    productpage: Sidecar
    ratings: Sidecar
    gateway: Sidecar
    tls: dict[str, TlsFiles] = field(default_factory=dict)

    @property
    def sidecars(self) -> tuple[Sidecar, ...]:
        return (self.reviews, self.productpage, self.ratings, self.gateway)

    def set_reviews(self, mtls: str = "strict") -> None:
        config = reviews_config(mtls, f"sec-{next(_revisions)}")
        self.reviews.reload(config, timeout=60)


def reviews_config(mtls: str, revision: str) -> SidecarConfig:
    return service_config(
        "reviews",
        revision=revision,
        mtls=mtls,
        inbound=Inbound(service="reviews", access=Access(policies=POLICIES)),
    )


def caller_config(name: str) -> SidecarConfig:
    # `details` points at the reviews sidecar too: an endpoint presenting the wrong identity.
    # `legacy` is the app itself, a static endpoint with no sidecar (plaintext_endpoints).
    dests = (destination("reviews"), destination("details"), destination("legacy"))
    return service_config(name, dests, revision="r1", mtls="strict", inbound=None)


def with_tls(bindings: RuntimeBindings, files: TlsFiles) -> RuntimeBindings:
    return bindings.model_copy(update={"tls": files})


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = Path(tmp_path_factory.mktemp("mtls"))
    ca = MeshCA.load_or_create(root / "state" / "ca", TRUST_DOMAIN)
    tls = {
        name: write_sidecar_certs(ca, identity(*name.split("/")[::-1]),
                                  root / "state" / "sidecars" / name.replace("/", "-") / "tls")
        for name in ("reviews", "productpage", "ratings", "gateway/public")
    }
    app = start_app("reviews")
    started: list[Sidecar] = []
    try:
        # All four start at once (their ports are chosen up front); then wait for each, with
        # room for a machine busy with other suites.
        reviews = start_sidecar(
            root / "reviews",
            reviews_config("strict", "sec-0"),
            with_tls(bindings_for(outbound=False, app=app.address), tls["reviews"]),
            wait=False,
        )
        started.append(reviews)
        endpoints = {
            "reviews": {"v1": (reviews.inbound_address,)},
            "details": {"v1": (reviews.inbound_address,)},
            "legacy": {"v1": (app.address,)},
        }
        callers = {}
        for name in ("productpage", "ratings"):
            bindings = bindings_for(inbound=False, endpoints=endpoints).model_copy(
                update={"plaintext_endpoints": (app.address,)}
            )
            callers[name] = start_sidecar(
                root / name, caller_config(name), with_tls(bindings, tls[name]), wait=False
            )
            started.append(callers[name])
        gateway = start_sidecar(
            root / "gateway",
            gateway_config(
                "public",
                CompiledGateway(name="public", port=1, rules=(CompiledGatewayRule(name="shop", service="reviews"),)),
                (destination("reviews"),),
            ).model_copy(update={"mtls": "strict"}),
            with_tls(bindings_for(inbound=False, endpoints=endpoints), tls["gateway/public"]),
            wait=False,
        )
        started.append(gateway)
        for sidecar in started:
            sidecar.wait_ready(timeout=120)
        yield Mesh(
            root, ca, app, reviews, callers["productpage"], callers["ratings"], gateway, tls
        )
    finally:
        codes = [sc.stop() for sc in started]
        app.stop()
    assert codes == [0] * len(codes), [sc.stderr()[-1500:] for sc in started]


def client_context(files: TlsFiles | None, ca_file: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca_file)
    if files is not None:
        ctx.load_cert_chain(files.cert_file, files.key_file)
    return ctx


def tls_request(
    address: str, ctx: ssl.SSLContext, path: str = "/", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTPS request straight to the reviews sidecar's inbound listener.

    The server certificate is checked against the DNS mirror of reviews' SPIFFE ID.
    """
    host, _, port = address.rpartition(":")
    raw = socket.create_connection((host, int(port)), timeout=10)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.sock = ctx.wrap_socket(raw, server_hostname=dns_name(identity("reviews")))
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
        raw.close()
