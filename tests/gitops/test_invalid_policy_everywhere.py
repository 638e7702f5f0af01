"""Every command that compiles policy reports an invalid one the same way: validate's text
reporter on stderr (every diagnostic with file:line:column), then one line saying what was not
done, exit 1. They all go through `pipeline.build_source` and the CLI's one error boundary."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshctl.cli.main import main
from meshctl.errors import PolicyInvalid
from meshctl.rollout.source import compile_target
from tests.support.git import GitRepo

from .shop import MESH, service

BROKEN_ROUTE = """\
apiVersion: meshctl/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
    - name: default
      backends: [{version: v9, weight: 100}]
"""


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.write("mesh.d/mesh.yaml", MESH)
    repo.write("mesh.d/web.yaml", service("web", port=9000))
    repo.write("mesh.d/reviews.yaml", service("reviews", port=9100))
    repo.commit("valid")
    repo.write("mesh.d/route.yaml", BROKEN_ROUTE)  # a version reviews does not have
    repo.commit("a route to a version that does not exist")
    monkeypatch.chdir(repo.root)
    monkeypatch.delenv("MESHCTL_STATE", raising=False)
    return repo


COMMANDS = {
    "compile": (["compile", "mesh.d", "--out", "out"], "nothing was compiled"),
    "explain": (["explain", "--from", "web", "GET", "http://reviews/"], "nothing to explain"),
    "test": (["test", "mesh.d"], "nothing was tested"),
    "render": (["render", "kubernetes", "mesh.d", "--out", "k8s"], "nothing was rendered"),
    "up": (["up", "mesh.d", "--detach", "--state", "state"], "nothing was started"),
    "diff": (["diff", "HEAD~1", "HEAD"], "not compared"),
    "compile --rev": (["compile", "mesh.d", "--rev", "HEAD", "--out", "out"], "nothing was compiled"),
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_an_invalid_policy_is_reported_alike(repo: GitRepo, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "mesh.d"]) == 1
    report = capsys.readouterr().out  # validate's own text report of the same policy
    assert "mesh.d/route.yaml:" in report and "1 error(s)" in report
    args, consequence = COMMANDS[name]
    code = main(args)
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert report in captured.err  # the same reporter, the same lines
    assert captured.err.rstrip().splitlines()[-1].endswith(f"policy is invalid (1 error); {consequence}")
    assert "Traceback" not in captured.err and captured.out == ""
    assert not (repo.root / "out").exists() and not (repo.root / "k8s").exists()


def test_apply_source_carries_the_diagnostics_as_values(repo: GitRepo) -> None:
    """`apply` needs a running mesh before it compiles; its source raises the same error, with
    the diagnostics as values (rendered only by the CLI's boundary)."""
    with pytest.raises(PolicyInvalid) as caught:
        compile_target(Path("mesh.d"), None, allow_dirty=False)
    assert str(caught.value) == "HEAD: policy is invalid (1 error); nothing applied"
    assert [d.rule for d in caught.value.diagnostics if d.severity == "error"] != []
    assert all(d.file.endswith("route.yaml") for d in caught.value.diagnostics)
