"""JWKS from a URL, with real parts: a local HTTP server on 127.0.0.1 serves the key set to a
gateway sidecar. A rotation (new `kid`) is seen through the refetch on an unknown kid; a key
server that hangs holds a request no longer than the fetch timeout and never holds requests
whose key is cached; a key server that is down leaves the cached keys working."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from meshctl.runtime.polling import poll
from proxy_addon.edge_auth import FETCH_TIMEOUT_S, REFETCH_UNKNOWN_KID_S
from tests.edge.gateway_mesh import AUDIENCE, ISSUER, Reply, call, compile_gateway
from tests.support.procs import App, Sidecar, free_port, start_app, start_sidecar

POLICY = """apiVersion: meshctl/v1alpha1
kind: Mesh
metadata: {{name: shop}}
spec: {{mtls: disabled}}
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {{name: shop}}
spec:
  versions: [{{name: v1, run: [app]}}]
---
apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {{name: edge}}
spec:
  port: {port}
  authentication:
    jwt:
      - {{issuer: "{issuer}", audiences: [{audience}], jwksUri: "{uri}"}}
  rules:
    - {{name: shop, requireToken: true, service: shop}}
"""


def jwk(kid: str, key: rsa.RSAPrivateKey) -> dict[str, Any]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "alg": "RS256", "use": "sig"}


def token(kid: str, key: rsa.RSAPrivateKey) -> str:
    now = int(time.time())
    # a fresh jti: never a token the gateway has already verified (its cache would answer)
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 600,
              "jti": uuid.uuid4().hex}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


@dataclass
class KeyServer:
    """Serves `keys` as a JWKS; `hang` makes it accept and not answer (bounded)."""

    keys: list[dict[str, Any]]
    fetches: int = 0
    hang: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    def start(self) -> int:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                owner.fetches += 1
                if owner.hang.is_set():
                    owner.release.wait(timeout=3 * FETCH_TIMEOUT_S)
                    return
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@dataclass
class Setup:
    sidecar: Sidecar
    port: int
    keys: KeyServer

    def get(self, bearer: str) -> Reply:
        return call(self.port, "shop.example.com", "/", headers={"authorization": f"Bearer {bearer}"})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    from meshctl.contract import Listeners, RuntimeBindings

    root: Path = tmp_path_factory.mktemp("jwks-url")
    app: App = start_app("shop")
    first = rsa.generate_private_key(65537, 2048)
    server = KeyServer([jwk("k1", first)])
    server.first = first  # type: ignore[attr-defined]
    uri = f"http://127.0.0.1:{server.start()}/.well-known/jwks.json"
    port = free_port()
    configs = compile_gateway(root / "mesh.d", {"mesh.yaml": POLICY.format(
        port=port, issuer=ISSUER, audience=AUDIENCE, uri=uri)})
    bindings = RuntimeBindings(instance="gateway-edge", listeners=Listeners(admin=free_port()),
                               endpoints={"shop": {"v1": (app.address,)}})
    sc = start_sidecar(root / "sidecar", configs["gateway/edge"], bindings)
    yield Setup(sc, port, server)
    server.stop()
    code = sc.stop()
    app.stop()
    assert code == 0, sc.stderr()[-2000:]


def wait_refetch_window(since: float) -> None:
    """Refetches on an unknown kid are at most every REFETCH_UNKNOWN_KID_S."""
    time.sleep(max(0.0, since + REFETCH_UNKNOWN_KID_S + 0.3 - time.monotonic()))


@pytest.mark.slow  # three refetch windows of 5 s each
def test_jwks_url_rotation_hang_and_outage(setup: Setup) -> None:
    first = setup.keys.first  # type: ignore[attr-defined]
    second = rsa.generate_private_key(65537, 2048)
    stranger = rsa.generate_private_key(65537, 2048)

    # fetched on first use
    fetched = time.monotonic()
    assert setup.get(token("k1", first)).status == 200
    assert setup.keys.fetches == 1
    # the new key before the server has it: unknown, and no refetch storm
    early = setup.get(token("k2", second))
    assert early.status == 401, early.body
    assert setup.keys.fetches == 1

    # rotation on the server: the token with the new kid passes after the refetch
    setup.keys.keys = [jwk("k2", second), jwk("k1", first)]
    wait_refetch_window(fetched)
    fetched = time.monotonic()
    rotated = setup.get(token("k2", second))
    assert rotated.status == 200, rotated.body
    assert setup.keys.fetches == 2

    # the key server hangs: the request that needs a fetch waits at most the fetch timeout;
    # requests whose key is cached go on meanwhile
    setup.keys.hang.set()
    wait_refetch_window(fetched)
    fetched = time.monotonic()
    slow: dict[str, Any] = {}

    def unknown() -> None:
        start = time.monotonic()
        slow["reply"] = setup.get(token("k3", stranger))
        slow["seconds"] = time.monotonic() - start

    waiting = threading.Thread(target=unknown)
    waiting.start()
    poll(lambda: setup.keys.fetches >= 3, timeout=2, every=0.02)
    assert setup.keys.fetches == 3  # the fetch is under way
    start = time.monotonic()
    assert setup.get(token("k1", first)).status == 200
    assert setup.get(token("k2", second)).status == 200
    assert time.monotonic() - start < 2.0
    waiting.join(timeout=FETCH_TIMEOUT_S + 10)
    assert slow["reply"].status == 401, slow["reply"].body
    assert FETCH_TIMEOUT_S - 0.5 <= slow["seconds"] <= FETCH_TIMEOUT_S + 2.0, slow["seconds"]

    # the key server is down: the failed refetch keeps the cached keys
    setup.keys.stop()
    wait_refetch_window(fetched)
    assert setup.get(token("k3", stranger)).status == 401
    for kid, key in (("k1", first), ("k2", second)):
        reply = setup.get(token(kid, key))
        assert reply.status == 200, reply.body
    assert "not fetched" in setup.sidecar.stderr()
