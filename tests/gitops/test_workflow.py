"""The pull-request workflow users copy: schema-valid, and its steps work on a real repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.support.git import GitRepo

from .shop import REVIEWS_ROUTE_CHANGED, write_shop

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "meshctl-review.yml"


def test_workflow_passes_the_github_workflow_schema() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _steps() -> dict[str, dict[str, object]]:
    doc = YAML(typ="safe").load(WORKFLOW.read_text())
    return {step["name"]: step for step in doc["jobs"]["review"]["steps"] if "name" in step}


def _run_step(name: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = str(_steps()[name]["run"])
    assert "${{" not in script  # expressions belong in env:, where this test can set them
    return subprocess.run(
        ["bash", "-eo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )


@pytest.fixture
def pull_request(tmp_path: Path) -> tuple[GitRepo, dict[str, str]]:
    """A repository with a base commit on main and a pull-request commit on a branch."""
    repo = GitRepo(tmp_path / "repo")
    write_shop(repo)
    base = repo.commit("shop")
    repo.git("checkout", "-q", "-b", "change")
    repo.write("mesh.d/routes/reviews.yaml", REVIEWS_ROUTE_CHANGED)
    head = repo.commit("reviews 80/20")
    summary = tmp_path / "summary.md"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "MESH_DIR": "mesh.d",
        "BASE_SHA": base,
        "HEAD_SHA": head,
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    return repo, env


def test_diff_step_writes_the_markdown_summary(pull_request: tuple[GitRepo, dict[str, str]]) -> None:
    repo, env = pull_request
    proc = _run_step("Diff against the base branch", repo.root, env)
    assert proc.returncode == 0, proc.stderr
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert "### meshctl diff" in summary
    assert 'rule "default" weights v1 90 -> 80, v2 10 -> 20' in summary
    assert summary.rstrip().endswith("<!-- meshctl-diff -->")  # the comment step finds it by this
    doc = json.loads((repo.root / "meshctl-diff.json").read_text())
    assert doc["target"] == env["HEAD_SHA"] and doc["changes"]


def test_diff_step_reports_an_invalid_head(pull_request: tuple[GitRepo, dict[str, str]]) -> None:
    repo, env = pull_request
    repo.write("mesh.d/routes/reviews.yaml", REVIEWS_ROUTE_CHANGED.replace("weight: 80", "weight: 1"))
    env = {**env, "HEAD_SHA": repo.commit("broken")}
    proc = _run_step("Diff against the base branch", repo.root, env)
    assert proc.returncode == 1
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert "meshctl diff failed (exit 1)" in summary and "MESH012" in summary


def test_validate_step_prints_github_annotations(
    pull_request: tuple[GitRepo, dict[str, str]],
) -> None:
    repo, env = pull_request
    repo.write("mesh.d/routes/reviews.yaml", REVIEWS_ROUTE_CHANGED.replace("weight: 80", "weight: 1"))
    proc = _run_step("Validate (problems show on the changed lines)", repo.root, env)
    assert proc.returncode == 1
    assert "::error file=mesh.d/routes/reviews.yaml,line=" in proc.stdout


def test_policy_test_step_annotates_failures(pull_request: tuple[GitRepo, dict[str, str]]) -> None:
    repo, env = pull_request
    repo.write(
        "mesh.d/tests/reviews.yaml",
        "tests:\n"
        "  - name: jason gets v2\n"
        "    request: {from: productpage, url: http://reviews/r, headers: {end-user: jason}}\n"
        "    expect: {rule: beta-testers, backend: reviews/v2}\n"
        "  - name: everyone gets v1\n"
        "    request: {from: productpage, url: http://reviews/r}\n"
        "    expect: {backend: reviews/v1}\n",
    )
    proc = _run_step("Policy tests (failures show on the test files' lines)", repo.root, env)
    assert proc.returncode == 1, proc.stderr
    assert "ok   jason gets v2" in proc.stdout
    assert "::error file=mesh.d/tests/reviews.yaml,line=5,col=1," in proc.stdout
    assert "everyone gets v1: expected backend reviews/v1, got a split" in proc.stdout
