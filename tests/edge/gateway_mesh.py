"""A gateway compiled from real policy YAML, with test keys, certificates and apps.

The policy goes through `validate` and `compile` like any mesh.d/; the certificates, keys and
JWKS it names are files written here (never in git). Ports are free ports of this machine.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from meshctl.contract import SidecarConfig
from meshctl.pipeline import build
from meshctl.sources.worktree import read_worktree
from tests.edge.pki import CertAuthority

ISSUER = "https://id.shop.example"
AUDIENCE = "shop-web"


@dataclass
class Keys:
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    stranger: rsa.RSAPrivateKey  # not in the JWKS

    def jwks(self) -> str:
        keys = []
        for kid, key, alg in (("rsa-1", self.rsa, "RS256"), ("ec-1", self.ec, "ES256")):
            jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        return json.dumps({"keys": keys})

    def token(self, *, alg: str = "RS256", key: Any = None, kid: str | None = None,
              **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 600, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        if key is None:
            key = self.rsa if alg == "RS256" else self.ec
        kid = kid if kid is not None else ("rsa-1" if alg == "RS256" else "ec-1")
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def make_keys() -> Keys:
    return Keys(rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP256R1()),
                rsa.generate_private_key(65537, 2048))


def compile_gateway(policy_dir: Path, files: dict[str, str]) -> dict[str, SidecarConfig]:
    policy_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (policy_dir / name).write_text(text)
    result = build(read_worktree(policy_dir), revision="edge-test")
    assert result.compiled is not None, [f"{d.rule} {d.message}" for d in result.diagnostics]
    assert [d for d in result.diagnostics if d.severity == "error"] == []
    return result.compiled.configs


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    cert_serial: int | None = None

    def json(self) -> Any:
        return json.loads(self.body)


def call(port: int, host: str, path: str = "/", *, sni: str | None = None, ca: CertAuthority | None = None,
         method: str = "GET", headers: dict[str, str] | None = None,
         source: str = "127.0.0.1") -> Reply:
    """One request to 127.0.0.1:port; over TLS with `sni` when `ca` is given (the client trusts
    the test CA but does not check the name: the tests look at what the gateway chose)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    serial = None
    if ca is not None:
        ctx = ssl.create_default_context(cafile=str(ca.path))
        ctx.check_hostname = False
        sock = ctx.wrap_socket(sock, server_hostname=sni)
        from cryptography import x509
        der = sock.getpeercert(binary_form=True)
        assert der is not None
        serial = x509.load_der_x509_certificate(der).serial_number
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.sock = sock
    try:
        conn.request(method, path, headers={"Host": host, **(headers or {})})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read(), serial)
    finally:
        conn.close()
