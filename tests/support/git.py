"""The one git helper of the tests: real repositories with a fixed author and clock.

No user or system git config reaches them (`HOME` points nowhere, `GIT_CONFIG_NOSYSTEM`), and
no inherited `GIT_*` variable (a test run inside a hook has `GIT_DIR` set) redirects them.
`git_env()` is the environment for a meshctl process that commits (promote, apply's ref).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

EPOCH = "2026-01-01T00:00:00Z"
AUTHOR = {
    "GIT_AUTHOR_NAME": "Mesh Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Mesh Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
}
_ISOLATED = {"GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}


def git_env(base: Mapping[str, str] | None = None, date: str = EPOCH) -> dict[str, str]:
    """`base` (default: this process's environment) without GIT_* variables, plus the author."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("GIT_")}
    return env | AUTHOR | {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}


def git(repo: Path, *args: str, date: str = EPOCH) -> str:
    """Run git in `repo`; its stdout, stripped. A failing git raises CalledProcessError."""
    proc = subprocess.run(
        ["git", *args], cwd=repo, env=git_env(date=date) | _ISOLATED,
        capture_output=True, text=True, check=True,
    )
    return proc.stdout.strip()


def init_repo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    return root


def commit_all(repo: Path, message: str, date: str = EPOCH) -> str:
    """Stage everything, commit (empty commits too), return the commit id."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message, date=date)
    return git(repo, "rev-parse", "HEAD")


class GitRepo:
    """A repository whose clock ticks a second per commit, so commit ids are stable and ordered."""

    def __init__(self, root: Path) -> None:
        self.root = init_repo(root)
        self._tick = 0

    def _date(self) -> str:
        return f"2026-01-01T00:{self._tick // 60:02d}:{self._tick % 60:02d}Z"

    def git(self, *args: str) -> str:
        return git(self.root, *args, date=self._date())

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def remove(self, rel: str) -> None:
        (self.root / rel).unlink()

    def commit(self, message: str) -> str:
        self._tick += 1
        return commit_all(self.root, message, date=self._date())
