"""Regexes run on RE2: what validate accepts is what the sidecar and explain run, in linear time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from meshctl.contract import CompiledStringMatch as StringMatch
from meshctl.decision.routing import string_matches
from meshctl.pipeline import load_policy
from meshctl.regex import full_match, regex_problem
from meshctl.sources.worktree import read_worktree
from tests.conftest import run_meshctl
from tests.reliability.hostile_yaml import SERVICE, route

NOT_RE2 = ["/a++", "(?>a+)b", "(a)?(?(1)b|c)", "(?=a)b", "(a)\\1", "(?P<x>a)(?P=x)", "a{1001}", "/(x"]


@pytest.mark.parametrize("pattern", NOT_RE2)
def test_validate_refuses_what_re2_cannot_run_at_its_position(pattern: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "svc.yaml").write_text(SERVICE % "shop")
    (tmp_path / "route.yaml").write_text(route(pattern))
    monkeypatch.chdir(tmp_path)
    result = load_policy(read_worktree(Path(".")))
    got = [(d.file, d.line, d.column, d.rule) for d in result.diagnostics if d.severity == "error"]
    assert got == [("route.yaml", 8, 30, "MESH021")], result.diagnostics
    assert "RE2" in result.diagnostics[0].message


def test_every_refused_pattern_is_one_python_re_accepted() -> None:
    """The defect: these passed validation though the docs say RE2 (Python's `re` took them)."""
    import re
    for pattern in ("/a++", "(?>a+)b", "(a)?(?(1)b|c)"):
        re.compile(pattern)
        assert regex_problem(pattern) is not None


def test_catastrophic_pattern_answers_at_once() -> None:
    """`/(a+)+$` against 27+ `a`s froze a gateway for 17 s under backtracking `re`."""
    match = StringMatch(regex="/(a+)+$")
    for n in (27, 34, 5_000):
        start = time.perf_counter()
        assert not string_matches(match, "/" + "a" * n + "!")
        assert string_matches(match, "/" + "a" * n)
        assert time.perf_counter() - start < 0.5  # backtracking took 17 s at n=27


def test_full_match_is_anchored_at_both_ends() -> None:
    assert full_match("/reviews/[0-9]+", "/reviews/12")
    assert not full_match("/reviews/[0-9]+", "/reviews/12/x")
    assert not full_match("/reviews/[0-9]+", "x/reviews/12")
    assert not full_match("(", "(")  # a refused pattern matches nothing


def test_explain_with_the_catastrophic_pattern_returns_quickly(tmp_path: Path) -> None:
    (tmp_path / "svc.yaml").write_text(SERVICE % "shop")
    (tmp_path / "route.yaml").write_text(route("/(a+)+$"))
    start = time.monotonic()
    proc = run_meshctl("explain", "--dir", str(tmp_path), "--from", "shop", "GET",
                       "http://shop/" + "a" * 34 + "!", timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "default" in proc.stdout
    # Backtracking would take hours on 34 a's; RE2 takes microseconds, the rest is interpreter start.
    assert time.monotonic() - start < 25
