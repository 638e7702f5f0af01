"""The gateway as an API gateway, with real parts: a sidecar compiled from policy YAML, HTTPS
with certificates from a test CA chosen by SNI, JWTs signed with test keys (RS256 and ES256)
verified against a JWKS file, CORS, and a per-client limit told apart by source address
(127.0.0.2 and 127.0.0.3 are loopback addresses too)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from meshctl.contract import Listeners, RuntimeBindings, SidecarConfig
from tests.edge.gateway_mesh import AUDIENCE, ISSUER, Keys, Reply, call, compile_gateway, make_keys
from tests.edge.pki import CertAuthority, make_ca
from tests.support.procs import App, Sidecar, free_port, start_app, start_sidecar

# The apps are reached directly (no sidecars of their own here): mesh mTLS is off.
SERVICES = """apiVersion: meshctl/v1alpha1
kind: Mesh
metadata: {name: shop}
spec: {mtls: disabled}
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: shop}
spec:
  versions: [{name: v1, run: [app]}]
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: api}
spec:
  versions: [{name: v1, run: [app]}]
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: reviews}
spec:
  versions: [{name: v1, run: [app]}, {name: v2, run: [app]}]
---
apiVersion: meshctl/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
    - name: beta-users
      match: [{claims: {group: {exact: beta}}}]
      backends: [{version: v2}]
    - name: default
      backends: [{version: v1}]
"""

GATEWAY = """apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {{name: edge}}
spec:
  listeners:
    - {{name: web, port: {http_port}, protocol: http, hosts: [shop.example.com]}}
    - name: secure
      port: {https_port}
      protocol: https
      hosts: [shop.example.com, "*.api.example.com"]
      tls:
        certificates:
          - {{certFile: {pki}/shop.crt, keyFile: {pki}/shop.key}}
          - {{certFile: {pki}/api.crt, keyFile: {pki}/api.key}}
  authentication:
    jwt:
      - issuer: "{issuer}"
        audiences: [{audience}]
        jwksFile: {pki}/jwks.json
        subjectHeader: x-user
  cors:
    allowOrigins: [{{exact: "https://app.shop.example"}}, {{regex: "https://[a-z0-9-]+\\\\.preview\\\\.shop\\\\.example"}}]
    allowMethods: [GET, POST]
    allowHeaders: [authorization, content-type]
    exposeHeaders: [x-app]
    allowCredentials: true
    maxAge: 10m
{rate_limit}  rules:
    - name: to-https
      listeners: [web]
      redirect: {{scheme: https, port: {https_port}}}
    - name: moved
      listeners: [secure]
      match: [{{path: {{exact: /old}}}}]
      redirect: {{path: /new}}
    - name: api
      hosts: ["*.api.example.com"]
      service: api
    - name: account
      hosts: [shop.example.com]
      match: [{{path: {{prefix: /account}}}}]
      requireToken: true
      service: shop
    - name: reviews
      match: [{{path: {{prefix: /reviews}}}}]
      service: reviews
    - name: shop
      hosts: [shop.example.com]
      service: shop
"""

RATE_LIMIT = "  rateLimit: {requestsPerSecond: 10, burst: 10}\n"


@dataclass
class Edge:
    sidecar: Sidecar
    ca: CertAuthority
    keys: Keys
    pki: Path
    http_port: int
    https_port: int
    configs: dict[str, SidecarConfig]

    def https(self, host: str, path: str = "/", sni: str | None = None, **kw: object) -> Reply:
        return call(self.https_port, host, path, sni=sni or host, ca=self.ca, **kw)  # type: ignore[arg-type]

    def bearer(self, token: str, path: str = "/reviews/1", **kw: object) -> Reply:
        return self.https("shop.example.com", path, headers={"authorization": f"Bearer {token}"}, **kw)


def _gateway_yaml(pki: Path, http_port: int, https_port: int, rate_limit: str = "") -> str:
    return GATEWAY.format(http_port=http_port, https_port=https_port, pki=pki, issuer=ISSUER,
                          audience=AUDIENCE, rate_limit=rate_limit)


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[str, App]]:
    started = {name: start_app(name) for name in ("shop", "api", "reviews-v1", "reviews-v2")}
    yield started
    for app in started.values():
        app.stop()


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, apps: dict[str, App]) -> Iterator[Edge]:
    root = tmp_path_factory.mktemp("edge")
    pki = root / "pki"
    ca = make_ca(pki)
    ca.issue(["shop.example.com"], pki / "shop.crt", pki / "shop.key")
    ca.issue(["*.api.example.com"], pki / "api.crt", pki / "api.key")
    keys = make_keys()
    (pki / "jwks.json").write_text(keys.jwks())
    http_port, https_port = free_port(), free_port()
    configs = {}
    for name, limit in (("open", ""), ("limited", RATE_LIMIT)):
        compiled = compile_gateway(root / name, {"svc.yaml": SERVICES,
                                                 "gw.yaml": _gateway_yaml(pki, http_port, https_port, limit)})
        configs[name] = compiled["gateway/edge"]
    bindings = RuntimeBindings(
        instance="gateway-edge", listeners=Listeners(admin=free_port()),
        endpoints={"shop": {"v1": (apps["shop"].address,)}, "api": {"v1": (apps["api"].address,)},
                   "reviews": {"v1": (apps["reviews-v1"].address,), "v2": (apps["reviews-v2"].address,)}},
    )
    sc = start_sidecar(root / "sidecar", configs["open"], bindings)
    yield Edge(sc, ca, keys, pki, http_port, https_port, configs)
    assert sc.stop() == 0, sc.stderr()[-2000:]


# --- listeners, hosts and certificates -------------------------------------------------------


def test_two_hosts_on_one_https_listener_reach_different_services(edge: Edge) -> None:
    shop = edge.https("shop.example.com", "/")
    api = edge.https("v1.api.example.com", "/items")
    assert (shop.status, shop.headers.get("x-app")) == (200, "shop"), shop.body
    assert (api.status, api.headers.get("x-app")) == (200, "api")
    assert shop.cert_serial != api.cert_serial  # each name got its own certificate by SNI


def test_wrong_sni_or_host_is_404_nr(edge: Edge) -> None:
    wrong_sni = edge.https("shop.example.com", "/", sni="evil.example.org")
    wrong_host = edge.https("evil.example.org", "/", sni="shop.example.com")
    plain_wrong_host = call(edge.http_port, "evil.example.org", "/")
    for reply in (wrong_sni, wrong_host, plain_wrong_host):
        assert (reply.status, reply.headers.get("x-mesh-response-flags")) == (404, "NR")


def test_http_listener_redirects_to_https(edge: Edge) -> None:
    reply = call(edge.http_port, "shop.example.com", "/cart?id=3")
    assert reply.status == 301
    assert reply.headers["location"] == f"https://shop.example.com:{edge.https_port}/cart?id=3"


def test_redirect_on_the_https_listener_keeps_https(edge: Edge) -> None:
    reply = edge.https("shop.example.com", "/old")
    assert reply.status == 301, reply.body
    assert reply.headers["location"] == "https://shop.example.com/new"


def test_renewed_certificate_is_used_without_restart(edge: Edge) -> None:
    before = edge.https("shop.example.com").cert_serial
    edge.ca.issue(["shop.example.com"], edge.pki / "shop.crt", edge.pki / "shop.key", serial=4242)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reply = edge.https("shop.example.com")
        if reply.cert_serial == 4242:
            break
        time.sleep(0.2)
    assert reply.cert_serial == 4242 != before
    assert reply.status == 200
    assert edge.sidecar.proc.poll() is None  # the same process


# --- end-user JWT ----------------------------------------------------------------------------


def test_tokens_signed_with_the_test_keys_pass_and_the_subject_is_forwarded(edge: Edge) -> None:
    for alg in ("RS256", "ES256"):
        reply = edge.bearer(edge.keys.token(alg=alg, sub="alice"), "/account/orders")
        assert reply.status == 200, (alg, reply.body)
        seen = reply.json()["headers"]
        assert seen["x-user"] == "alice"
        assert "Authorization" not in seen  # removed: forwardOriginalToken is false


def test_bad_tokens_each_get_401(edge: Edge) -> None:
    keys = edge.keys
    now = int(time.time())
    header = jwt.utils.base64url_encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).decode()
    payload = jwt.utils.base64url_encode(json.dumps(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 600}).encode()).decode()
    valid = keys.token()
    tampered = valid[:-4] + ("AAAA" if not valid.endswith("AAAA") else "BBBB")
    cases = {
        "expired": (keys.token(exp=now - 3600, iat=now - 7200), "expired"),
        "wrong issuer": (keys.token(iss="https://evil.example"), "issuer"),
        "wrong audience": (keys.token(aud="someone-else"), "Audiences"),
        "bad signature": (tampered, "verification fails"),
        "alg none": (f"{header}.{payload}.", "not allowed"),
        "another key": (keys.token(key=keys.stranger), "verification fails"),
        "unknown kid": (keys.token(key=keys.stranger, kid="rsa-2"), "kid"),
    }
    for name, (token, words) in cases.items():
        for path in ("/account/orders", "/"):  # refused even where no token is required
            reply = edge.bearer(token, path)
            assert reply.status == 401, (name, path, reply.body)
            assert reply.headers["x-mesh-response-flags"] == "UAEX"
            assert words in reply.json()["error"], (name, reply.json())
    missing = edge.https("shop.example.com", "/account/orders")
    assert missing.status == 401 and "missing" in missing.json()["error"]
    assert edge.https("shop.example.com", "/").status == 200  # no token needed there


def test_claim_match_routes_beta_users_to_v2(edge: Edge) -> None:
    beta = edge.bearer(edge.keys.token(group="beta"))
    others = edge.bearer(edge.keys.token(group="stable"))
    anonymous = edge.https("shop.example.com", "/reviews/1")
    assert beta.headers.get("x-app") == "reviews-v2"
    assert others.headers.get("x-app") == "reviews-v1"
    assert anonymous.headers.get("x-app") == "reviews-v1"
    # A client cannot claim a group by header: only a verified token carries claims.
    forged = edge.https("shop.example.com", "/reviews/1", headers={"group": "beta", "x-user": "root"})
    assert forged.headers.get("x-app") == "reviews-v1"
    assert "x-user" not in {k.lower() for k in forged.json()["headers"]}


# --- CORS ------------------------------------------------------------------------------------


def test_cors_preflight_is_answered_per_policy(edge: Edge, apps: dict[str, App]) -> None:
    preflight = {"origin": "https://app.shop.example", "access-control-request-method": "POST",
                 "access-control-request-headers": "content-type"}
    before = apps["shop"].stats()["paths"].get("/cart", 0)
    reply = edge.https("shop.example.com", "/cart", method="OPTIONS", headers=preflight)
    assert reply.status == 204
    assert reply.headers["access-control-allow-origin"] == "https://app.shop.example"
    assert reply.headers["access-control-allow-methods"] == "GET,POST"
    assert reply.headers["access-control-allow-headers"] == "authorization,content-type"
    assert reply.headers["access-control-allow-credentials"] == "true"
    assert reply.headers["access-control-max-age"] == "600"
    assert apps["shop"].stats()["paths"].get("/cart", 0) == before  # never reached the app
    regex = edge.https("shop.example.com", "/cart", method="OPTIONS",
                       headers={**preflight, "origin": "https://pr-7.preview.shop.example"})
    assert regex.headers["access-control-allow-origin"] == "https://pr-7.preview.shop.example"
    simple = edge.https("shop.example.com", "/cart", headers={"origin": "https://app.shop.example"})
    assert simple.status == 200
    assert simple.headers["access-control-allow-origin"] == "https://app.shop.example"
    assert simple.headers["access-control-expose-headers"] == "x-app"


def test_disallowed_origin_gets_no_cors_headers(edge: Edge) -> None:
    evil = {"origin": "https://evil.example", "access-control-request-method": "POST"}
    preflight = edge.https("shop.example.com", "/cart", method="OPTIONS", headers=evil)
    simple = edge.https("shop.example.com", "/cart", headers={"origin": "https://evil.example"})
    assert preflight.status == 403
    assert simple.status == 200
    for reply in (preflight, simple):
        assert not [h for h in reply.headers if h.startswith("access-control-")], reply.headers


# --- per-client rate limit -------------------------------------------------------------------


def test_one_client_over_the_limit_gets_429_and_another_is_unaffected(edge: Edge) -> None:
    edge.sidecar.reload(edge.configs["limited"])
    try:
        started = time.monotonic()
        replies = [edge.https("shop.example.com", "/", source="127.0.0.2") for _ in range(100)]
        elapsed = time.monotonic() - started
        other = [edge.https("shop.example.com", "/", source="127.0.0.3") for _ in range(5)]
    finally:
        edge.sidecar.reload(edge.configs["open"])
    passed = [r for r in replies if r.status == 200]
    limited = [r for r in replies if r.status == 429]
    assert len(passed) + len(limited) == 100
    # A burst of 10, then 10 per second for as long as the loop ran.
    assert 10 <= len(passed) <= 10 + 10 * elapsed + 2, (len(passed), elapsed)
    assert len(limited) >= 100 - (10 + 10 * elapsed + 2)
    assert all(r.headers["x-mesh-response-flags"] == "RL" for r in limited)
    assert all(int(r.headers["retry-after"]) >= 1 for r in limited)
    assert [r.status for r in other] == [200] * 5


def test_config_has_no_certificate_material(edge: Edge) -> None:
    text = edge.sidecar.config_path.read_text()
    assert "BEGIN" not in text and os.fspath(edge.pki) in text  # paths only, never keys
