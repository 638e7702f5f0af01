"""meshctl.sources.git on real repositories: reading policy from git objects, refs, errors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from meshctl.errors import UsageError
from meshctl.sources.git import APPLIED_REF, GitError, PolicyRepo, clean_env
from tests.support.git import GitRepo


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.write("README.md", "hello\n")
    repo.write("deploy/mesh.d/services/a.yaml", "kind: Service # v1\n")
    repo.write("deploy/mesh.d/routes/b.yml", "kind: Route\n")
    repo.write("deploy/mesh.d/.hidden.yaml", "hidden\n")
    repo.write("deploy/mesh.d/.drafts/c.yaml", "hidden too\n")
    repo.write("deploy/mesh.d/tests/t.yaml", "tests: []\n")
    repo.write("deploy/mesh.d/notes.txt", "not policy\n")
    repo.write("deploy/other.yaml", "outside\n")
    repo.commit("first")
    return repo


def test_reads_policy_of_a_subdirectory_at_a_revision(repo: GitRepo) -> None:
    first = repo.git("rev-parse", "HEAD")
    repo.write("deploy/mesh.d/services/a.yaml", "kind: Service # v2\n")
    repo.commit("second")
    src = PolicyRepo.discover(repo.root / "deploy" / "mesh.d")
    assert src.root == repo.root.resolve()
    assert src.prefix == "deploy/mesh.d"
    files = src.read_policy(src.resolve(first))
    names = [Path(f.path).resolve().relative_to(repo.root / "deploy" / "mesh.d").as_posix() for f in files]
    assert names == ["routes/b.yml", "services/a.yaml"]
    assert files[1].text == "kind: Service # v1\n"
    assert src.read_policy(src.resolve("HEAD"))[1].text == "kind: Service # v2\n"


def test_display_paths_follow_the_users_spelling(repo: GitRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo.root / "deploy")
    src = PolicyRepo.discover(Path("mesh.d"))
    assert [f.path for f in src.read_policy(src.resolve("HEAD"))] == [
        "mesh.d/routes/b.yml",
        "mesh.d/services/a.yaml",
    ]


def test_policy_dir_at_repository_root(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "r")
    repo.write("x.yaml", "a: 1\n")
    repo.commit("c")
    src = PolicyRepo.discover(repo.root)
    assert src.prefix == ""
    assert [f.text for f in src.read_policy(src.resolve("HEAD"))] == ["a: 1\n"]


def test_many_files_and_binary_sizes_read_in_one_batch(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "r")
    bodies = {f"mesh.d/s{i:03d}.yaml": f"name: s{i}\n" + "x" * i + "\n" for i in range(150)}
    bodies["mesh.d/empty.yaml"] = ""
    bodies["mesh.d/utf8.yaml"] = "name: café ☕\n"
    bodies["mesh.d/tests/t.yaml"] = "tests: []\n"  # policy tests are not policy
    for rel, body in bodies.items():
        repo.write(rel, body)
    repo.commit("c")
    src = PolicyRepo.discover(repo.root / "mesh.d")
    files = src.read_policy(src.resolve("HEAD"))
    got = {Path(f.path).resolve().relative_to(repo.root).as_posix(): f.text for f in files}
    del bodies["mesh.d/tests/t.yaml"]
    assert got == bodies


def test_unknown_revision_is_a_usage_error(repo: GitRepo) -> None:
    src = PolicyRepo.discover(repo.root / "deploy" / "mesh.d")
    with pytest.raises(GitError, match="unknown revision 'nope'") as info:
        src.resolve("nope")
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2
    with pytest.raises(GitError):
        src.resolve("--output=/tmp/x")


def test_not_a_repository(tmp_path: Path) -> None:
    (tmp_path / "mesh.d").mkdir()
    with pytest.raises(GitError, match="not inside a git repository"):
        PolicyRepo.discover(tmp_path / "mesh.d")


def test_shallow_clone_reads_present_revision_and_refuses_missing_one(repo: GitRepo, tmp_path: Path) -> None:
    repo.write("deploy/mesh.d/services/a.yaml", "kind: Service # v2\n")
    repo.commit("second")
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{repo.root}", str(clone)],
        check=True,
        env=clean_env(),
    )
    src = PolicyRepo.discover(clone / "deploy" / "mesh.d")
    assert src.is_shallow()
    assert src.read_policy(src.resolve("HEAD"))[1].text == "kind: Service # v2\n"
    with pytest.raises(GitError, match="shallow"):
        src.resolve("HEAD~1")


def test_dirty_detection_is_scoped_to_the_policy_dir(repo: GitRepo) -> None:
    src = PolicyRepo.discover(repo.root / "deploy" / "mesh.d")
    assert not src.is_dirty()
    repo.write("README.md", "changed outside\n")
    assert not src.is_dirty()
    repo.write("deploy/mesh.d/services/new.yaml", "untracked\n")
    assert src.is_dirty()
    repo.remove("deploy/mesh.d/services/new.yaml")
    repo.write("deploy/mesh.d/routes/b.yml", "modified\n")
    assert src.is_dirty()


def test_applied_ref_round_trip_with_history(repo: GitRepo) -> None:
    src = PolicyRepo.discover(repo.root / "deploy" / "mesh.d")
    first = src.resolve("HEAD")
    assert src.read_ref() is None
    assert src.ref_history() == []
    src.update_ref(first, "apply first", expect_old="")
    repo.write("deploy/mesh.d/services/a.yaml", "changed\n")
    second = repo.commit("second")
    src.update_ref(second, "apply second", expect_old=first)
    assert src.read_ref(APPLIED_REF) == second
    assert src.ref_history() == [(second, "apply second"), (first, "apply first")]
    with pytest.raises(GitError):  # the ref moved: a racing apply must fail
        src.update_ref(first, "stale", expect_old=first)
    src.delete_ref()
    assert src.read_ref() is None


def test_inherited_git_dir_does_not_redirect(repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = GitRepo(tmp_path / "other")
    other.write("mesh.d/z.yaml", "other\n")
    other.commit("c")
    monkeypatch.setenv("GIT_DIR", str(other.root / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other.root))
    assert "GIT_DIR" not in clean_env()
    src = PolicyRepo.discover(repo.root / "deploy" / "mesh.d")
    assert src.root == repo.root.resolve()
    assert len(src.read_policy(src.resolve("HEAD"))) == 2
    assert os.environ["GIT_DIR"]  # the caller's environment is left alone


def test_reading_a_revision_leaves_the_work_tree_alone(repo: GitRepo) -> None:
    first = repo.git("rev-parse", "HEAD")
    repo.write("deploy/mesh.d/services/a.yaml", "kind: Service # v2\n")
    repo.commit("second")
    repo.write("deploy/mesh.d/services/a.yaml", "uncommitted edit\n")
    repo.write("deploy/mesh.d/services/new.yaml", "untracked\n")
    status_before = repo.git("status", "--porcelain")
    src = PolicyRepo.discover(repo.root / "deploy" / "mesh.d")
    src.read_policy(src.resolve(first))
    assert (repo.root / "deploy/mesh.d/services/a.yaml").read_text() == "uncommitted edit\n"
    assert repo.git("status", "--porcelain") == status_before
    assert repo.git("rev-parse", "HEAD") != first


def test_undecodable_file_is_reported_not_raised(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "r")
    (repo.root / "mesh.d").mkdir()
    (repo.root / "mesh.d" / "bad.yaml").write_bytes(b"name: \xff\xfe\n")
    repo.commit("c")
    src = PolicyRepo.discover(repo.root / "mesh.d")
    [file] = src.read_policy(src.resolve("HEAD"))
    assert file.error is not None and "UTF-8" in file.error


def test_policy_tree_is_the_content_hash_of_the_directory(repo: GitRepo) -> None:
    src = PolicyRepo.discover(repo.root / "deploy" / "mesh.d")
    first = src.resolve("HEAD")
    tree = src.policy_tree(first)
    assert tree == repo.git("rev-parse", "HEAD:deploy/mesh.d")
    repo.write("README.md", "outside the policy\n")
    assert src.policy_tree(repo.commit("readme")) == tree  # same content, same tree
    repo.git("rm", "-q", "-r", "deploy/mesh.d")
    repo.write("deploy/mesh.d", "now a file\n")
    assert src.policy_tree(repo.commit("a file")) is None
    assert PolicyRepo.discover(repo.root).policy_tree(first) == repo.git("rev-parse", "HEAD~2^{tree}")


def test_ignored_policy_files_make_the_policy_dir_dirty(repo: GitRepo) -> None:
    repo.write(".gitignore", "*.swp\nlocal-*.yaml\n")
    repo.commit("ignore")
    src = PolicyRepo.discover(repo.root / "deploy" / "mesh.d")
    repo.write("deploy/mesh.d/routes/.b.yml.swp", "editor junk\n")
    assert not src.is_dirty()  # ignored, and not something the policy reader would read
    repo.write("deploy/mesh.d/local-override.yaml", "kind: Route\n")
    assert src.is_dirty()  # ignored by git, but read by `meshctl` from the work tree


def test_missing_git_binary_is_said_plainly(repo: GitRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    src = PolicyRepo.discover(repo.root / "deploy" / "mesh.d")
    monkeypatch.setenv("PATH", str(repo.root))  # no git here
    with pytest.raises(GitError, match="git is not installed"):
        src.resolve("HEAD")
