"""Listener connection settings as policy: inherited field by field (listener, Gateway or
Service, Mesh defaults, built-in), bounded by validate, one setting per port."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshctl.contract import ConnectionLimits
from meshctl.pipeline import build
from meshctl.sources.worktree import read_worktree

MESH = """apiVersion: meshctl/v1alpha1
kind: Mesh
metadata: {name: mesh}
spec:
  defaults:
    connections: {idleTimeout: 60s, maxConnections: 500}
"""
SERVICES = """apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: shop}
spec:
  versions: [{name: v1, run: [app]}]
  connections: {requestHeadersTimeout: none}
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: cart}
spec:
  versions: [{name: v1, run: [app]}]
"""
GATEWAY = """apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {name: public}
spec:
  connections: {requestHeadersTimeout: 5s}
  listeners:
    - {name: web, port: 8080, connections: {maxConnections: 20}}
    - {name: admin, port: 9090%s}
  rules: [{name: all, service: shop}]
"""


def _build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gateway_extra: str = "", mesh: str = MESH):
    for name, text in {"mesh.yaml": mesh, "svc.yaml": SERVICES, "gw.yaml": GATEWAY % gateway_extra}.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    return build(read_worktree(Path(".")))


def test_settings_inherit_field_by_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _build(tmp_path, monkeypatch)
    assert result.compiled is not None, result.diagnostics
    configs = result.compiled.configs
    assert configs["shop"].connections == ConnectionLimits(
        request_headers_timeout_ms=None, idle_timeout_ms=60_000, max_connections=500)
    assert configs["cart"].connections == ConnectionLimits(
        request_headers_timeout_ms=10_000, idle_timeout_ms=60_000, max_connections=500)
    gateway = configs["gateway/public"].gateway
    assert gateway is not None
    by_name = {listener.name: listener.connections for listener in gateway.listeners}
    assert by_name["web"] == ConnectionLimits(
        request_headers_timeout_ms=5_000, idle_timeout_ms=60_000, max_connections=20)
    assert by_name["admin"] == ConnectionLimits(
        request_headers_timeout_ms=5_000, idle_timeout_ms=60_000, max_connections=500)


def test_builtin_defaults_without_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = "apiVersion: meshctl/v1alpha1\nkind: Mesh\nmetadata: {name: mesh}\n"
    result = _build(tmp_path, monkeypatch, mesh=bare)
    assert result.compiled is not None, result.diagnostics
    assert result.compiled.configs["cart"].connections == ConnectionLimits(
        request_headers_timeout_ms=10_000, idle_timeout_ms=300_000, max_connections=1024)


@pytest.mark.parametrize(("extra", "line"), [
    (", connections: {requestHeadersTimeout: 50ms}", 8),
    (", connections: {idleTimeout: 500ms}", 8),
    (", connections: {maxConnections: 0}", 8),
    (", connections: {maxConnections: 100000000}", 8),
    (", connections: {idleTimeout: 99999999999h}", 8),
])
def test_values_are_bounded(extra: str, line: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _build(tmp_path, monkeypatch, extra)
    errors = [(d.file, d.line) for d in result.diagnostics if d.severity == "error"]
    assert result.compiled is None and errors == [("gw.yaml", line)], result.diagnostics


def test_one_port_one_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = GATEWAY.replace("port: 9090%s", "port: 8080, hosts: [admin.example.com]").replace(
        "port: 8080, connections", "port: 8080, hosts: [www.example.com], connections")
    for name, text in {"mesh.yaml": MESH, "svc.yaml": SERVICES, "gw.yaml": gateway}.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    result = build(read_worktree(Path(".")))
    problems = [(d.rule, d.line) for d in result.diagnostics if d.severity == "error"]
    assert problems == [("MESH080", 8)], result.diagnostics
    assert "shares port 8080 with listener 'web'" in result.diagnostics[0].message


def test_explain_shows_the_listener_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from meshctl.explain import Question, explain
    from meshctl.explain.text import text_report

    result = _build(tmp_path, monkeypatch)
    assert result.compiled is not None
    configs = result.compiled.configs
    shop = explain(configs, Question("shop", "GET", "http://cart/"))
    assert "outbound: no request-header timeout, idle timeout 1m, at most 500 connections" in text_report(shop)
    gateway = explain(configs, Question("gateway/public", "GET", "/"))
    assert gateway.as_dict()["connections"] == {
        "request_headers_timeout_ms": 5000, "idle_timeout_ms": 60000, "max_connections": 20}
    assert "gateway listener web (port 8080)" in text_report(gateway)
