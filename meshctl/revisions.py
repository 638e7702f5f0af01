"""Which policy files a command reads, and the revision they are named by.

The work tree is named by its git commit when it is clean, else by its content digest with
`-dirty` (also outside git); a git revision (`--rev`) is read from git objects, never checked out.
"""

from __future__ import annotations

from pathlib import Path

from meshctl.errors import UsageError
from meshctl.sources import PolicyFile
from meshctl.sources.git import GitError, PolicyRepo, run_git
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


def commit_subjects(policy_dir: Path, revisions: list[str]) -> dict[str, str]:
    """Commit id -> subject line, for the revisions that are commits of the policy's repo."""
    commits = sorted({r for r in revisions if r and not r.endswith("-dirty")})
    if not commits:
        return {}
    try:
        repo = PolicyRepo.discover(policy_dir)
    except GitError:
        return {}
    proc = run_git(["log", "--no-walk=unsorted", "--format=%H%x00%s", *commits], repo.root,
                   check=False)
    if proc.returncode != 0:  # a revision no longer in the repository: no subjects at all
        return {}
    rows = (line.partition("\0") for line in proc.stdout.decode(errors="replace").splitlines())
    return {commit: subject for commit, _, subject in rows}
