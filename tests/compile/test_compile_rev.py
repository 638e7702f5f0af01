"""`meshctl compile --rev` reads a revision from git objects; the work tree names its revision."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import REPO, run_meshctl
from tests.support.git import GitRepo

MINIMAL = REPO / "tests" / "cases" / "compile" / "minimal" / "mesh.d"


def test_compile_a_revision_without_touching_the_work_tree(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    shutil.copytree(MINIMAL, repo.root / "mesh.d")
    first = repo.commit("hello v1 only")
    text = (repo.root / "mesh.d" / "app.yaml").read_text()
    repo.write("mesh.d/app.yaml", text + "    - name: v2\n      run: [python3, -m, http.server]\n")
    repo.commit("add v2")
    repo.write("mesh.d/app.yaml", "not: [valid\n")  # an uncommitted, broken work tree

    at_first = run_meshctl("compile", "--rev", "HEAD~1", "--out", str(tmp_path / "out1"), cwd=repo.root)
    assert at_first.returncode == 0, at_first.stderr
    manifest = json.loads((tmp_path / "out1" / "manifest.json").read_text())
    assert manifest["revision"] == first
    config = json.loads((tmp_path / "out1" / "services" / "hello.json").read_text())
    assert config["destinations"]["hello"]["versions"] == ["v1"]
    assert (repo.root / "mesh.d" / "app.yaml").read_text() == "not: [valid\n"  # untouched

    worktree = run_meshctl("compile", "--out", str(tmp_path / "out2"), cwd=repo.root)
    assert worktree.returncode == 1 and "MESH001" in worktree.stderr

    unknown = run_meshctl("compile", "--rev", "no-such-branch", "--out", str(tmp_path / "out3"), cwd=repo.root)
    assert unknown.returncode == 2 and "no-such-branch" in unknown.stderr and "Traceback" not in unknown.stderr


def test_a_revision_without_the_policy_directory_is_a_usage_error(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("README", "before the mesh\n")
    repo.commit("no policy yet")
    shutil.copytree(MINIMAL, repo.root / "mesh.d")
    repo.commit("add the mesh")
    proc = run_meshctl("compile", "--rev", "HEAD~1", "--out", str(tmp_path / "out"), cwd=repo.root)
    assert proc.returncode == 2 and "has no mesh.d directory" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_clean_work_tree_is_named_by_its_commit(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    shutil.copytree(MINIMAL, repo.root / "mesh.d")
    head = repo.commit("hello")
    proc = run_meshctl("compile", "--out", "out", cwd=repo.root)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((repo.root / "out" / "manifest.json").read_text())["revision"] == head
