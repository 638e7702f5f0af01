"""Numbers get sane bounds and header values cannot carry CR, LF or NUL: each refused at its
position by validate, so nothing unbounded or response-splitting reaches a sidecar."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshctl.pipeline import load_policy
from meshctl.sources.worktree import read_worktree

SERVICE = """apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: shop}
spec:
  versions: [{name: v1, run: [app]}]
  trafficPolicy:
    outlierDetection: {consecutive5xx: %s}
"""
ROUTE = """apiVersion: meshctl/v1alpha1
kind: Route
metadata: {name: shop}
spec:
  service: shop
  rules:
    - name: default
      backends: [{version: v1}]
      %s
"""
MESH = """apiVersion: meshctl/v1alpha1
kind: Mesh
metadata: {name: mesh}
spec:
  rollout: {canary: %s}
"""


def _errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **files: str) -> list[tuple[str, int, str]]:
    files.setdefault("svc.yaml", SERVICE % "5")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    result = load_policy(read_worktree(Path(".")))
    return [(d.file, d.line, d.rule) for d in result.diagnostics if d.severity == "error"]


@pytest.mark.parametrize("line", [
    "timeout: 99999999999999999999999999h",
    "timeout: 1000h",
    "retries: {attempts: 2, perTryTimeout: 9999999999ms}",
    "fault: {delay: {fixed: 9999999s, percent: 100}}",
])
def test_durations_are_bounded(line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    errors = _errors(tmp_path, monkeypatch, **{"route.yaml": ROUTE % line})
    assert [(f, ln) for f, ln, _ in errors] == [("route.yaml", 9)], errors


@pytest.mark.parametrize("value", ["1e23", "100000000000000000000000", "10001"])
def test_consecutive_5xx_is_bounded(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    errors = _errors(tmp_path, monkeypatch, **{"svc.yaml": SERVICE % value})
    assert [(f, ln) for f, ln, _ in errors] == [("svc.yaml", 7)], errors


@pytest.mark.parametrize("value", ["1e20", "1001", "'0%'", "'101%'", "'999%'"])
def test_canary_is_bounded(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    errors = _errors(tmp_path, monkeypatch, **{"mesh.yaml": MESH % value})
    assert [(f, ln) for f, ln, _ in errors] == [("mesh.yaml", 5)], errors


def test_the_bounds_keep_ordinary_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"route.yaml": ROUTE % "timeout: 30s", "mesh.yaml": MESH % "'10%'", "svc.yaml": SERVICE % "5"}
    assert _errors(tmp_path, monkeypatch, **files) == []


@pytest.mark.parametrize("line", [
    'headers: {request: {set: {x-a: "a\\r\\nset-cookie: evil=1"}}}',
    'headers: {request: {add: {x-a: "a\\nb"}}}',
    'headers: {response: {set: {x-a: "a\\u0000b"}}}',
    'redirect: {host: "a\\r\\nx: y"}',
    'redirect: {path: "/a\\r\\nx: y"}',
    'rewrite: {host: "a\\nb"}',
    'rewrite: {pathPrefix: "/a\\nb"}',
])
def test_header_injection_from_policy_is_refused(line: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    text = ROUTE % line
    if "redirect" in line:
        text = text.replace("      backends: [{version: v1}]\n", "")
    errors = _errors(tmp_path, monkeypatch, **{"route.yaml": text})
    assert errors and all(f == "route.yaml" and ln >= 8 for f, ln, _ in errors), errors
    assert all(rule != "MESH005" for _, _, rule in errors), errors  # refused for its value


def test_a_tab_in_a_header_value_is_still_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line = 'headers: {request: {set: {x-a: "a\\tb"}}}'
    assert _errors(tmp_path, monkeypatch, **{"route.yaml": ROUTE % line}) == []
