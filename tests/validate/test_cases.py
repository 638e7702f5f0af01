"""The broken-policy corpus: each case directory holds policy files and `expected.txt`.

`expected.txt` lists every diagnostic as `file:line:column: severity RULE`, so a case fails when
a problem is missed, misplaced, or reported under another rule id.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshctl.pipeline import load_policy
from meshctl.sources.worktree import read_worktree

CASES = Path(__file__).resolve().parent.parent / "cases" / "validate"
CASE_DIRS = sorted(p for p in CASES.iterdir() if p.is_dir())


def test_corpus_is_large_enough() -> None:
    assert len(CASE_DIRS) >= 40


@pytest.mark.parametrize("case", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_case_reports_expected_diagnostics(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(case)
    result = load_policy(read_worktree(Path(".")))
    got = [f"{d.file}:{d.line}:{d.column}: {d.severity} {d.rule}" for d in result.diagnostics]
    expected = (case / "expected.txt").read_text().splitlines()
    assert got == expected
    assert all(d.message and d.rule.startswith("MESH") for d in result.diagnostics)


def test_whole_corpus_through_the_cli_never_tracebacks(tmp_path: Path) -> None:
    """A sample of cases as a user runs them: exit 1 or 0, JSON on stdout, no traceback."""
    for case in CASE_DIRS[::6]:
        proc = subprocess.run(
            [sys.executable, "-m", "meshctl", "validate", str(case), "--format", "json"],
            capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"},
        )
        assert "Traceback" not in proc.stderr, case.name
        report = json.loads(proc.stdout)
        has_errors = any(p["severity"] == "error" for p in report["problems"])
        assert proc.returncode == (1 if has_errors else 0), case.name
        assert report["valid"] is (not has_errors)
