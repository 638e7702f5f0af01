"""Untrusted text through every command that shows it, on a real mesh: a header value with a
C1 control, a right-to-left override and rich markup (`[bold]`), a test name with ESC, a commit
subject with ESC and `[bold]`. validate, diff, explain, test, status and history print each
escaped (`\\uXXXX`) and the markup as the literal text it is, never interpreted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.reliability.test_terminal_escapes import _clean
from tests.runtime.helpers import git, meshctl
from tests.support.meshdir import policy_root

pytestmark = pytest.mark.slow
EVIL_VALUE = "[bold]x\u202ey\x9bz[/bold]"  # a header value may hold these (not controls C0)
MESH = f"""\
apiVersion: meshctl/v1alpha1
kind: Mesh
metadata: {{name: tiny}}
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {{name: catalog}}
spec:
  versions:
    - {{name: v1, run: [{sys.executable}, -m, shop.catalog]}}
---
apiVersion: meshctl/v1alpha1
kind: Route
metadata: {{name: catalog}}
spec:
  service: catalog
  rules:
    - name: default
      backends: [{{version: v1}}]
      headers: {{request: {{set: {{x-note: "VALUE"}}}}}}
---
apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {{name: edge}}
spec:
  port: 8080
  rules: [{{name: all, service: catalog}}]
"""
TESTS = """tests:
  - name: "evil \\e[2J [bold]loud[/bold] \\u202eexe.txt"
    request: {from: gateway/edge, url: /}
    expect: {status: 418}
"""


def _check(proc_out: str, what: str) -> None:
    assert _clean(proc_out), f"{what} printed a raw control: {proc_out!r}"


def test_every_command_prints_untrusted_text_escaped(tmp_path: Path) -> None:
    value = EVIL_VALUE.replace("\u202e", "\\u202e").replace("\x9b", "\\x9b")
    root = policy_root(tmp_path / "repo", {"mesh.yaml": MESH.replace("VALUE", value), "tests/t.yaml": TESTS},
                       apps=True, commit="first \x1b[2J[bold]loud[/bold]\u202e")
    escaped_value = "[bold]x\\u202ey\\u009bz[/bold]"

    validate = meshctl(root, "validate")
    assert validate.code == 0, validate.stderr
    _check(validate.stdout + validate.stderr, "validate")

    explain = meshctl(root, "explain", "--from", "gateway/edge", "GET", "/")
    assert explain.code == 0, explain.stderr
    _check(explain.stdout, "explain")
    assert escaped_value in explain.stdout, explain.stdout

    test = meshctl(root, "test")
    assert test.code == 1
    _check(test.stdout + test.stderr, "test")
    assert "[bold]loud[/bold]" in test.stdout + test.stderr

    (root / "mesh.d" / "mesh.yaml").write_text(MESH.replace("VALUE", value + "2"))
    diff = meshctl(root, "diff")
    _check(diff.stdout + diff.stderr, "diff")
    assert escaped_value in diff.stdout, diff.stdout
    git(root, "checkout", "-q", "--", "mesh.d")

    up = meshctl(root, "up", "--detach", "--gateway-port", "edge=0", "--timeout", "120")
    assert up.code == 0, up.stderr
    try:
        _check(up.stdout + up.stderr, "up")
        status = meshctl(root, "status", "--interval", "0")
        assert status.code == 0, status.stderr
        _check(status.stdout, "status")
        history = meshctl(root, "history")
        assert history.code == 0, history.stderr
        _check(history.stdout, "history")
        assert "first \\u001b[2J[bold]loud[/bold]\\u202e" in history.stdout, history.stdout
    finally:
        meshctl(root, "down")
