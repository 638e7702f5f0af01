"""No private key outside the state directory: not in the policy repo, compiled output or git.

A user keeps `mesh.d/` in git and runs meshctl from the repository, so the state directory
(`.meshctl/` beside the policy) sits inside the work tree. Even a careless `git add -A` must
not commit the CA or a sidecar key. (Sidecar logs are scanned in test_mtls.py, where real
sidecars run with real keys.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from meshctl.cli.main import main
from tests.support.git import commit_all, git, init_repo

REPO = Path(__file__).resolve().parents[2]
# Spelled in two parts so this file does not match its own pattern.
PEM_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE" + r" KEY-----")


def key_bodies(state: Path) -> list[str]:
    """The base64 lines of every private key under `state` (what a leak would contain)."""
    bodies = []
    for path in state.rglob("*.pem"):
        text = path.read_text(errors="replace")
        if PEM_PRIVATE_KEY.search(text):
            lines = [ln for ln in text.splitlines() if ln and not ln.startswith("-----")]
            bodies.extend(ln for ln in lines if len(ln) >= 40)
    return bodies


def scan(text: str, bodies: list[str]) -> list[str]:
    found = [m.group(0) for m in PEM_PRIVATE_KEY.finditer(text)]
    return found + [b for b in bodies if b in text]


def tree_text(root: Path) -> str:
    return "\n".join(
        p.read_text(errors="replace") for p in sorted(root.rglob("*")) if p.is_file()
    )


def test_ca_and_sidecar_keys_stay_out_of_policy_output_and_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "mesh.d", repo / "mesh.d")
    init_repo(repo)
    monkeypatch.chdir(repo)
    monkeypatch.delenv("MESHCTL_STATE", raising=False)
    # State in its default place, inside the work tree: CA, one sidecar's files, compiled out.
    assert main(["ca", "init"]) == 0
    assert main(["ca", "issue", "reviews", "--out", ".meshctl/sidecars/reviews/tls"]) == 0
    assert main(["ca", "rotate"]) == 0
    assert main(["compile", "mesh.d", "--out", "out"]) == 0
    output = capsys.readouterr()
    state = repo / ".meshctl"
    bodies = key_bodies(state)
    assert len(bodies) >= 2  # the CA key and the sidecar key are there to be found
    commit_all(repo, "everything")

    tracked = git(repo, "ls-files")
    assert ".meshctl" not in tracked
    history = git(repo, "log", "--all", "-p", "--no-color")
    assert "mesh.d/mesh.yaml" in history  # the scan reads real history
    assert scan(history, bodies) == []
    assert scan(tree_text(repo / "mesh.d"), bodies) == []
    assert (repo / "out" / "manifest.json").is_file()
    assert scan(tree_text(repo / "out"), bodies) == []
    assert scan(output.out + output.err, bodies) == []


# A key, not a mention of one: the header followed by base64 lines (diff-prefixed in `git log -p`).
PEM_PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE" + r" KEY-----\n(?:[+\- ]?[A-Za-z0-9+/=]{40,}\n)+"
)


def test_project_history_holds_no_private_key() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    history = subprocess.run(
        ["git", "log", "--all", "-p", "--no-color"],
        cwd=REPO, check=True, capture_output=True, text=True, errors="replace",
    ).stdout
    assert history, "empty history: the scan would prove nothing"
    # Tests may write a bare header to check that a file is refused; a key has a body.
    assert [m.group(0)[:40] for m in PEM_PRIVATE_KEY_BLOCK.finditer(history)] == []


def test_the_history_scan_finds_a_key_block() -> None:
    key = (
        "-----BEGIN PRIVATE" + " KEY-----\n+" + "A" * 64 + "\n+" + "B" * 20 + "=\n"
        "-----END PRIVATE" + " KEY-----\n"
    )
    assert PEM_PRIVATE_KEY_BLOCK.search("diff\n+" + key)
    assert not PEM_PRIVATE_KEY_BLOCK.search('key.write_text("-----BEGIN PRIVATE' + ' KEY-----\\n")')
