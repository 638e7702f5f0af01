"""Untrusted text never reaches the terminal raw: ESC, C0/C1 controls and bidi overrides are
written as visible \\uXXXX escapes by every command (test, validate, explain, diff, status)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from meshctl.cli.common import out
from meshctl.cli.escape import terminal_safe
from tests.conftest import run_meshctl
from tests.reliability.hostile_yaml import SERVICE

RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\u2066", "\x00", "\r")


def _clean(text: str) -> bool:
    return not any(ch in text for ch in RAW)


def test_escaping_keeps_layout_and_json_meaning() -> None:
    evil = "a\x1b[31mred\u202eevil\tb\nc\x9b"
    safe = terminal_safe(evil)
    assert _clean(safe) and "\t" in safe and "\n" in safe
    assert "\\u001b[31m" in safe and "\\u202e" in safe
    assert json.loads(terminal_safe(json.dumps(evil, ensure_ascii=False))) == evil


def test_out_escapes_whatever_a_command_prints(capsys: pytest.CaptureFixture[str]) -> None:
    out("name: \x1b]0;pwned\x07 \u202etxt.exe\n")
    assert _clean(capsys.readouterr().out)


def test_meshctl_test_prints_hostile_test_names_escaped(tmp_path: Path) -> None:
    """The defect: `meshctl test` printed test names with ESC and RLO raw."""
    mesh = tmp_path / "mesh.d"
    (mesh / "tests").mkdir(parents=True)
    (mesh / "shop.yaml").write_text(SERVICE % "shop")
    (mesh / "tests" / "t.yaml").write_text(
        'tests:\n  - name: "evil \\e[2J\\e]0;title\\a \\u202eexe.txt"\n'
        "    request: {from: shop, url: 'http://shop/'}\n    expect: {status: 418}\n")
    proc = run_meshctl("test", str(mesh))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "evil" in proc.stdout + proc.stderr
    assert _clean(proc.stdout) and _clean(proc.stderr)
    assert "\\u001b[2J" in proc.stdout + proc.stderr


def test_validate_prints_a_hostile_file_name_escaped(tmp_path: Path) -> None:
    if sys.platform != "linux":
        pytest.skip("file names with control characters")
    mesh = tmp_path / "mesh.d"
    mesh.mkdir()
    (mesh / "evil\x1b[2J\u202e.yaml").write_text("kind: [Service]\n")
    proc = run_meshctl("validate", str(mesh))
    assert proc.returncode == 1
    assert _clean(proc.stdout) and _clean(proc.stderr)
    assert "evil\\u001b[2J\\u202e.yaml" in proc.stdout


def test_explain_prints_hostile_request_parts_escaped(tmp_path: Path) -> None:
    (tmp_path / "shop.yaml").write_text(SERVICE % "shop")
    proc = run_meshctl("explain", "--dir", str(tmp_path), "--from", "shop", "GET",
                       "http://shop/\x1b[2J\u202e", "-H", "x-a: \x1b]0;t\x07")
    assert _clean(proc.stdout) and _clean(proc.stderr), proc.stdout
