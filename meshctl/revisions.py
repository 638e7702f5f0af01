"""Which policy files a command reads, and the revision they are named by.

The work tree is named by its git commit when it is clean, else by its content digest with
`-dirty` (also outside git); a git revision (`--rev`) is read from git objects, never checked out.
"""

from __future__ import annotations

from pathlib import Path

from meshctl.errors import UsageError
from meshctl.sources import PolicyFile
from meshctl.sources.git import GitError, PolicyRepo
from meshctl.sources.worktree import read_worktree


def worktree_revision(policy_dir: Path) -> str | None:
    """HEAD's commit id when the policy dir is in git and clean; None otherwise."""
    try:
        repo = PolicyRepo.discover(policy_dir)
        head = repo.try_resolve("HEAD")
        if head is None or repo.is_dirty():
            return None
        return head
    except GitError:
        return None


def read_policy(policy_dir: Path, rev: str | None = None) -> tuple[list[PolicyFile], str | None]:
    """(files, revision); revision None means "name it by content digest, -dirty"."""
    if rev is not None:
        repo = PolicyRepo.discover(policy_dir)
        commit = repo.resolve(rev)
        if not repo.has_policy_dir(commit):
            raise UsageError(f"revision {rev} has no {repo.prefix or 'policy'} directory")
        return repo.read_policy(commit), commit
    return read_worktree(policy_dir), worktree_revision(policy_dir)
