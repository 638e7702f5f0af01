"""`meshctl test`: expectations that hold, that fail (saying which and why), and bad test files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from meshctl.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repository's example policy, with its tests."""
    target = tmp_path / "mesh.d"
    shutil.copytree(ROOT / "mesh.d", target)
    monkeypatch.chdir(tmp_path)
    return target


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["test", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_repositorys_own_policy_tests_pass(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "mesh.d", "--format", "json")
    doc = json.loads(out)
    assert code == 0, out + err
    assert doc["failed"] == 0 and doc["passed"] >= 10
    assert {"name", "ok", "message"} <= set(doc["cases"][0])


def test_failures_say_which_expectation_and_why(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (shop / "tests" / "wrong.yaml").write_text(
        "tests:\n"
        "  - name: wrong rule and backend\n"
        "    request: {from: frontend, url: http://reviews/reviews/1, headers: {end-user: jason}}\n"
        "    expect: {rule: default, backend: reviews/v1}\n"
        "  - name: a split is not one backend\n"
        "    request: {from: frontend, url: http://reviews/reviews/1}\n"
        "    expect: {backend: reviews/v1, split: {reviews/v1: 50, reviews/v2: 50}}\n"
        "  - name: access and status\n"
        "    request: {from: frontend, url: http://ratings/x}\n"
        "    expect: {access: allow, status: null}\n"
        "  - name: unknown caller\n"
        "    request: {from: nobody, url: http://reviews/}\n"
        "    expect: {status: null}\n"
    )
    code, out, _ = run(capsys, "mesh.d")
    assert code == 1
    lines = {line.split(" (mesh.d/tests/wrong.yaml")[0]: line for line in out.splitlines()}
    assert (
        "expected rule 'default', got 'beta-testers' (matched header end-user = jason)"
        in lines["FAIL wrong rule and backend"]
    )
    assert "expected backend reviews/v1, got reviews/v2" in lines["FAIL wrong rule and backend"]
    split = lines["FAIL a split is not one backend"]
    assert "got a split reviews/v1 90, reviews/v2 10 (no sticky key in the request)" in split
    assert "expected split reviews/v1 50, reviews/v2 50, got reviews/v1 90, reviews/v2 10" in split
    access = lines["FAIL access and status"]
    assert "expected status forwarded (null), got 403 [RBAC]" in access
    assert "expected access allow, got deny" in access
    assert "no sidecar named 'nobody'" in lines["FAIL unknown caller"]
    assert "mesh.d/tests/wrong.yaml:2)" in lines["FAIL wrong rule and backend"]
    assert out.splitlines()[-1] == "15 passed, 4 failed"


def test_bad_test_files_are_positioned_problems(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (shop / "tests" / "bad.yaml").write_text(
        "tests:\n"
        "  - name: typo\n"
        "    request: {from: frontend, url: http://reviews/}\n"
        "    expect: {rulez: default}\n"
        "  - name: bad status\n"
        "    request: {url: http://reviews/}\n"
        "    expect: {status: fine, timeout: soon}\n"
    )
    (shop / "tests" / "broken.yaml").write_text("tests: [\n")
    code, out, err = run(capsys, "mesh.d")
    assert code == 1
    assert "mesh.d/tests/bad.yaml:4:14: error TEST001: unknown key 'rulez'" in err
    assert "mesh.d/tests/bad.yaml:6:14: error TEST001: request.from must be a non-empty string" in err
    assert "mesh.d/tests/bad.yaml:7:22: error TEST001: status must be an HTTP status" in err
    assert "mesh.d/tests/bad.yaml:7:37: error TEST001: 'soon' is not a duration" in err
    assert "mesh.d/tests/broken.yaml:2:1: error TEST001: YAML syntax error" in err
    assert "Traceback" not in err
    assert out.splitlines()[-1] == "15 passed, 0 failed"  # good cases still run


def test_invalid_policy_is_exit_1(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    route = shop / "routes" / "reviews.yaml"
    route.write_text(route.read_text().replace("weight: 90", "weight: 95"))
    code, out, err = run(capsys, "mesh.d")
    assert (code, out) == (1, "")
    assert "MESH012" in err and "policy is invalid" in err


def test_no_tests_is_said_plainly(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(shop / "tests")
    code, out, err = run(capsys, "mesh.d")
    assert (code, out) == (0, "")
    assert "no policy tests in mesh.d/tests/" in err
