"""`meshctl validate` as a user runs it: formats, exit codes, positions, the example repo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import REPO, run_meshctl

CASES = REPO / "tests" / "cases" / "validate"


def test_repository_mesh_d_is_valid() -> None:
    proc = run_meshctl("validate", str(REPO / "mesh.d"), "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["valid"] is True
    assert [p for p in report["problems"] if p["severity"] == "error"] == []


def test_init_output_validates_clean(tmp_path: Path) -> None:
    target = tmp_path / "mesh.d"
    assert run_meshctl("init", str(target)).returncode == 0
    proc = run_meshctl("validate", str(target), "--strict")
    assert proc.returncode == 0, proc.stdout
    assert "policy is valid" in proc.stdout
    again = run_meshctl("init", str(target))
    assert again.returncode == 2 and "--force" in again.stderr


def test_text_format_matches_the_spec_shape(tmp_path: Path) -> None:
    shutil.copytree(CASES / "weights-110", tmp_path / "mesh.d")
    proc = run_meshctl("validate", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == (
        "mesh.d/route.yaml:9:9: error MESH012: backends weights sum to 110, must be 100 "
        "(spec.rules[0].backends)"
    )


def test_github_format_emits_workflow_commands(tmp_path: Path) -> None:
    shutil.copytree(CASES / "many-problems-one-file", tmp_path / "mesh.d")
    proc = run_meshctl("validate", "--dir", "mesh.d", "--format", "github", cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("::error file=mesh.d/route.yaml,line=8,col=17,title=MESH012")


def test_sarif_format_is_sarif_2_1(tmp_path: Path) -> None:
    proc = run_meshctl("validate", str(CASES / "no-catch-all-warning"), "--format", "sarif")
    assert proc.returncode == 0  # warnings only
    sarif = json.loads(proc.stdout)
    assert sarif["version"] == "2.1.0"
    result = sarif["runs"][0]["results"][0]
    assert result["ruleId"] == "MESH016" and result["level"] == "warning"
    assert result["locations"][0]["physicalLocation"]["region"] == {"startLine": 7, "startColumn": 7}


def test_strict_turns_warnings_into_failure() -> None:
    proc = run_meshctl("validate", str(CASES / "no-catch-all-warning"), "--strict")
    assert proc.returncode == 1


def test_usage_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    missing = run_meshctl("validate", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    bad_format = run_meshctl("validate", str(CASES / "weights-99"), "--format", "xml")
    assert bad_format.returncode == 2 and "--format" in bad_format.stderr
