"""`meshctl diff` end to end on real git repositories in temp dirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshctl.cli.main import main
from meshctl.sources.git import PolicyRepo
from tests.support.git import GitRepo

from .shop import REVIEWS_ROUTE_CHANGED, write_shop

POLICY = "ops/mesh.d"  # a policy directory below the repository root


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.write("app/main.py", "print('app')\n")
    write_shop(repo, POLICY)
    repo.commit("shop")
    repo.write(f"{POLICY}/routes/reviews.yaml", REVIEWS_ROUTE_CHANGED)
    repo.remove(f"{POLICY}/services/ratings.yaml")
    repo.commit("reviews: beta testers, 80/20, more retries; drop ratings")
    monkeypatch.chdir(repo.root)
    return repo


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["diff", "--dir", POLICY, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_names_each_change(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "HEAD~1", "HEAD")
    assert code == 0
    lines = out.splitlines()
    assert lines[:4] == [
        "- ratings: service (versions v1) removed",
        '+ reviews: rule "beta-testers" added at position 1 of 2: header end-user = jason -> v2 100'
        " (timeout 15s; retries 2)",
        '~ reviews: rule "default" weights v1 90 -> 80, v2 10 -> 20',
        '~ reviews: rule "default" retries attempts 2 -> 3, on connect-failure -> connect-failure, 5xx',
    ]
    assert lines[4].startswith("4 changes in 2 sidecars (HEAD~1 (")


def test_json_format(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "HEAD~1", "HEAD", "--format", "json")
    doc = json.loads(out)
    assert code == 0
    assert doc["base"] == repo.git("rev-parse", "HEAD~1")
    assert doc["target"] == repo.git("rev-parse", "HEAD")
    got = {(c["sidecar"], c["path"], c["change"]) for c in doc["changes"]}
    assert got == {
        ("ratings", "", "removed"),
        ("reviews", "route.rules[beta-testers]", "added"),
        ("reviews", "route.rules[default].backends", "modified"),
        ("reviews", "route.rules[default].retries", "modified"),
    }
    weights = next(c for c in doc["changes"] if c["path"].endswith("backends"))
    assert [b["weight"] for b in weights["old"]] == [90, 10]
    assert [b["weight"] for b in weights["new"]] == [80, 20]


def test_exit_code(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--exit-code", "HEAD~1", "HEAD")[0] == 1
    code, out, _ = run(capsys, "--exit-code", "HEAD", "HEAD")
    assert (code, out.startswith("no changes between")) == (0, True)
    assert run(capsys, "--exit-code")[0] == 0  # HEAD against a clean work tree


def test_work_tree_is_default_target_and_left_untouched(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    route = repo.root / POLICY / "routes" / "reviews.yaml"
    edited = route.read_text().replace("weight: 80", "weight: 70").replace("weight: 20", "weight: 30")
    route.write_text(edited)
    untracked = repo.write(f"{POLICY}/services/ratings.yaml", "# work in progress\n")
    stamp = (route.stat().st_mtime_ns, untracked.stat().st_mtime_ns)
    status = repo.git("status", "--porcelain", "--untracked-files=all")

    code, out, err = run(capsys, "--exit-code")  # untracked ratings.yaml holds no document
    assert code == 1, err
    assert out.splitlines()[0] == '~ reviews: rule "default" weights v1 80 -> 70, v2 20 -> 30'
    assert run(capsys, "HEAD~1", "HEAD")[0] == 0

    assert route.read_text() == edited
    assert untracked.read_text() == "# work in progress\n"
    assert (route.stat().st_mtime_ns, untracked.stat().st_mtime_ns) == stamp
    assert repo.git("status", "--porcelain", "--untracked-files=all") == status
    assert repo.git("stash", "list") == ""


def test_base_defaults_to_applied_revision(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    src = PolicyRepo.discover(repo.root / POLICY)
    src.update_ref(src.resolve("HEAD~1"), "applied")
    code, out, _ = run(capsys, "--exit-code")
    assert code == 1
    assert "refs/meshctl/applied (" in out.splitlines()[-1]
    assert "ratings: service (versions v1) removed" in out


def test_unknown_revision_is_exit_2(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "no-such-branch")
    assert (code, out) == (2, "")
    assert "unknown revision 'no-such-branch'" in err
    assert "Traceback" not in err


def test_invalid_revision_is_reported_not_compiled(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    route = REVIEWS_ROUTE_CHANGED.replace("weight: 80", "weight: 85")  # sums to 105
    repo.write(f"{POLICY}/routes/reviews.yaml", route)
    repo.commit("bad weights")
    code, out, err = run(capsys, "HEAD~1", "HEAD")
    assert (code, out) == (1, "")
    assert "target HEAD (" in err and "policy is invalid (1 error); not compared" in err
    assert f"{POLICY}/routes/reviews.yaml:" in err and "MESH012" in err


def test_outside_git_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mesh.d").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["diff"]) == 2
    assert "not inside a git repository" in capsys.readouterr().err


def test_whole_process_exit_codes(repo: GitRepo) -> None:
    cmd = [sys.executable, "-m", "meshctl", "diff", "--dir", POLICY, "--exit-code"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    changed = subprocess.run([*cmd, "HEAD~1", "HEAD"], capture_output=True, text=True, env=env, timeout=180)
    same = subprocess.run([*cmd, "HEAD", "HEAD"], capture_output=True, text=True, env=env, timeout=180)
    assert changed.returncode == 1, changed.stderr
    assert same.returncode == 0, same.stderr
    assert "weights v1 90 -> 80" in changed.stdout


def test_builds_of_commits_are_cached_in_the_git_dir(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    cold = run(capsys, "--no-cache", "--format", "json", "HEAD~1", "HEAD")
    assert not (repo.root / ".git" / "meshctl").exists()
    first = run(capsys, "--format", "json", "HEAD~1", "HEAD")
    cached = list((repo.root / ".git" / "meshctl" / "builds").glob("*.pickle"))
    assert len(cached) == 2
    again = run(capsys, "--format", "json", "HEAD~1", "HEAD")
    assert cold == first == again
    # Same policy tree in another commit: served from the cache, named by the new commit.
    repo.write("app/main.py", "print('changed app only')\n")
    third = repo.commit("app only")
    code, out, _ = run(capsys, "--format", "json", "HEAD~1", "HEAD")
    assert (code, json.loads(out)["changes"], json.loads(out)["target"]) == (0, [], third)


def test_revision_without_the_policy_dir_is_an_empty_mesh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = GitRepo(tmp_path / "r")
    repo.write("README.md", "before the mesh\n")
    repo.commit("no mesh yet")
    write_shop(repo, POLICY)
    repo.commit("add the mesh")
    monkeypatch.chdir(repo.root)
    code, out, _ = run(capsys, "HEAD~1", "HEAD")
    assert code == 0
    assert out.splitlines()[:3] == [
        "+ productpage: service (versions v1) added",
        "+ ratings: service (versions v1) added",
        "+ reviews: service (versions v1, v2) added",
    ]
    code, out, _ = run(capsys, "HEAD", "HEAD~1", "--exit-code")
    assert code == 1 and out.count("removed") == 3


def test_shallow_clone(
    repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{repo.root}", str(clone)], check=True, capture_output=True
    )
    monkeypatch.chdir(clone)
    assert run(capsys, "--exit-code", "HEAD")[0] == 0  # the revision it holds: fine
    code, _, err = run(capsys, "HEAD~1", "HEAD")
    assert code == 2 and "unknown revision 'HEAD~1'" in err and "shallow" in err


def test_absolute_policy_dir_from_elsewhere(
    repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["diff", "--dir", str(repo.root / POLICY) + "/", "HEAD~1", "HEAD"])
    assert code == 0
    assert 'reviews: rule "default" weights v1 90 -> 80' in capsys.readouterr().out


def test_a_clean_work_tree_uses_the_cached_build_of_head(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "HEAD~1", "HEAD")  # caches both commits' builds
    builds = repo.root / ".git" / "meshctl" / "builds"
    before = sorted(p.name for p in builds.iterdir())
    code, out, _ = run(capsys, "--format", "json", "HEAD~1")
    doc = json.loads(out)
    assert (code, doc["target"], len(doc["changes"])) == (0, repo.git("rev-parse", "HEAD"), 4)
    assert sorted(p.name for p in builds.iterdir()) == before  # nothing new was compiled
    route = repo.root / POLICY / "routes" / "reviews.yaml"
    route.write_text(route.read_text().replace("weight: 80", "weight: 75").replace("weight: 20", "weight: 25"))
    doc = json.loads(run(capsys, "--format", "json", "HEAD")[1])
    assert doc["target"].endswith("-dirty")
    assert [c["summary"] for c in doc["changes"]] == ['rule "default" weights v1 80 -> 75, v2 20 -> 25']


def test_staged_compares_with_the_index(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    route = repo.root / POLICY / "routes" / "reviews.yaml"
    staged_text = route.read_text().replace("weight: 80", "weight: 70").replace("weight: 20", "weight: 30")
    route.write_text(staged_text)
    repo.git("add", str(route))
    route.write_text(staged_text.replace("weight: 70", "weight: 60").replace("weight: 30", "weight: 40"))
    code, out, _ = run(capsys, "--staged", "HEAD")
    assert code == 0
    assert out.splitlines()[0] == '~ reviews: rule "default" weights v1 80 -> 70, v2 20 -> 30'
    assert out.splitlines()[-1].endswith("(HEAD (" + repo.git("rev-parse", "--short", "HEAD") + ") -> index)")
    doc = json.loads(run(capsys, "--staged", "--format", "json", "HEAD")[1])
    assert doc["target"].endswith("-staged")
    assert run(capsys, "HEAD")[1].splitlines()[0] == '~ reviews: rule "default" weights v1 80 -> 60, v2 20 -> 40'
    assert route.read_text().count("weight: 60") == 1  # the work tree is left as it was
    code, _, err = run(capsys, "--staged", "HEAD~1", "HEAD")
    assert code == 2 and "not both" in err
