"""The two sides of a diff: which revisions they are, and their compiled configs.

BASE defaults to the applied revision (`refs/meshctl/applied`) when there is one, else `HEAD`;
TARGET defaults to the work tree. A git revision is read from git objects, never checked out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meshctl.pipeline import BuildResult, build
from meshctl.revisions import worktree_revision
from meshctl.sources.git import APPLIED_REF, GitError, PolicyRepo
from meshctl.sources.worktree import read_worktree

WORKTREE = "work tree"


@dataclass
class Side:
    ref: str  # as the user named it: "HEAD", "main~1", "work tree", "refs/meshctl/applied"
    commit: str | None  # the commit id, None for the work tree
    result: BuildResult

    @property
    def revision(self) -> str:
        """The compiled revision: a commit id, or the work tree's content digest with -dirty."""
        if self.result.compiled is not None:
            return self.result.compiled.revision
        return self.commit or WORKTREE

    def label(self, repo: PolicyRepo | None) -> str:
        if self.commit is None:
            return WORKTREE
        short = repo.short(self.commit) if repo is not None else self.commit[:12]
        return short if self.ref in (self.commit, short) else f"{self.ref} ({short})"


def default_base(repo: PolicyRepo) -> str:
    if repo.read_ref(APPLIED_REF) is not None:
        return APPLIED_REF
    if repo.try_resolve("HEAD") is None:
        raise GitError("the repository has no commits yet: there is no HEAD to compare with")
    return "HEAD"


def load_revision(repo: PolicyRepo, ref: str) -> Side:
    commit = repo.resolve(ref)
    if not repo.has_policy_dir(commit):
        raise GitError(f"{repo.prefix or 'the policy directory'} does not exist at {ref}")
    return Side(ref, commit, build(repo.read_policy(commit), commit))


def load_worktree(policy_dir: Path) -> Side:
    return Side(WORKTREE, None, build(read_worktree(policy_dir), worktree_revision(policy_dir)))


def load_sides(policy_dir: Path, base: str | None, target: str | None) -> tuple[Side, Side, PolicyRepo]:
    repo = PolicyRepo.discover(policy_dir)
    base_side = load_revision(repo, base or default_base(repo))
    target_side = load_worktree(policy_dir) if target is None else load_revision(repo, target)
    return base_side, target_side, repo
