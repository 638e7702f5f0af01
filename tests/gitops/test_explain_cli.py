"""`meshctl explain` on the repository's example policy: text, JSON (SPEC 7) and user mistakes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshctl.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["explain", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_sticky_user_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--from", "frontend", "GET", "http://reviews/reviews/1", "-H", "end-user: bob")
    assert code == 0
    rows = dict(line.split(":", 1) for line in out.splitlines())
    assert rows["rule"].strip() == "default (matched any request)"
    assert rows["split"].strip() == "reviews/v1 90%, reviews/v2 10%"
    assert rows["sticky"].strip() == "by header end-user: this user (bob) gets reviews/v1"
    assert rows["timeout"].strip() == "3s"
    assert rows["access"].strip() == "allow (allowed by policy 'reviews')"


def test_json_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--from", "frontend", "GET", "http://reviews/reviews/1", "--format", "json")
    doc = json.loads(out)
    assert code == 0
    assert {"rule", "status", "flags", "backends", "timeout", "retries", "fault", "access"} <= set(doc)
    assert doc["rule"] == "default" and doc["status"] is None and doc["access"] == "allow"
    assert doc["backends"] == [
        {"service": "reviews", "version": "v1", "probability": 0.9},
        {"service": "reviews", "version": "v2", "probability": 0.1},
    ]
    assert doc["retries"]["attempts"] == 2 and doc["timeout"] == "3s"


def test_refusals(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--from", "frontend", "GET", "http://ratings/r", "--format", "json")
    doc = json.loads(out)
    assert (doc["status"], doc["flags"], doc["access"]) == (403, ["RBAC"], "deny")
    _, out, _ = run(capsys, "--from", "frontend", "GET", "http://elsewhere/", "--format", "json")
    assert json.loads(out)["flags"] == ["NR"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "nobody", "GET", "http://reviews/"], "no sidecar named 'nobody'"),
        (["--from", "frontend", "GET", "http://reviews/", "-H", "broken"], "must look like"),
        (["--from", "frontend", "GET", "ftp://reviews/"], "must be http://<service>/<path>"),
        (["--from", "frontend", "GET", "/no-host"], "must name the service"),
    ],
)
def test_user_mistakes_exit_2(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    code, out, err = run(capsys, *args)
    assert (code, out) == (2, "")
    assert message in err and "Traceback" not in err
