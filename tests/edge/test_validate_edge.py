"""validate reads the files an edge policy names: JWKS content, certificate paths."""

from __future__ import annotations

import json
from pathlib import Path

from meshctl.pipeline import load_policy
from meshctl.sources.worktree import read_worktree

SERVICE = """apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: shop}
spec:
  versions: [{name: v1, run: [app]}]
"""


def _gateway(jwks: Path, cert: Path, key: Path) -> str:
    return f"""apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {{name: public}}
spec:
  listeners:
    - name: web
      port: 8443
      protocol: https
      hosts: [shop.example.com]
      tls: {{certificates: [{{certFile: {cert}, keyFile: {key}}}]}}
  authentication:
    jwt: [{{issuer: "https://id.example.com", jwksFile: {jwks}}}]
  rules: [{{name: all, service: shop}}]
"""


def _rules(tmp_path: Path, jwks_text: str) -> list[tuple[str, str]]:
    policy = tmp_path / "mesh.d"
    policy.mkdir()
    jwks, cert, key = tmp_path / "jwks.json", tmp_path / "gw.crt", tmp_path / "gw.key"
    jwks.write_text(jwks_text)
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    (policy / "svc.yaml").write_text(SERVICE)
    (policy / "gw.yaml").write_text(_gateway(jwks, cert, key))
    result = load_policy(read_worktree(policy))
    return [(d.rule, d.message) for d in result.diagnostics]


def test_jwks_that_is_not_json_is_reported(tmp_path: Path) -> None:
    found = _rules(tmp_path, '{"keys": [')
    assert [rule for rule, _ in found] == ["MESH063"]
    assert "not valid JSON" in found[0][1]


def test_jwks_without_keys_is_reported(tmp_path: Path) -> None:
    found = _rules(tmp_path, json.dumps({"kty": "RSA"}))
    assert [rule for rule, _ in found] == ["MESH063"]
    assert "not a key set" in found[0][1]


def test_existing_files_and_a_key_set_pass(tmp_path: Path) -> None:
    assert _rules(tmp_path, json.dumps({"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]})) == []
