"""Which policy an apply rolls out: a git revision (read from git objects), or the dirty work
tree when the user allows it. Uncommitted changes are refused by default: what runs should be
what a reviewer saw."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meshctl.compile.compiler import CompiledMesh
from meshctl.errors import PolicyInvalid, UsageError
from meshctl.pipeline import build
from meshctl.sources.git import PolicyRepo
from meshctl.sources.worktree import read_worktree
from meshctl.validate.report import as_text


@dataclass(frozen=True)
class Target:
    compiled: CompiledMesh
    commit: str | None  # None: the work tree, not a commit
    repo: PolicyRepo | None
    warnings: str


def compile_target(policy_dir: Path, rev: str | None, *, allow_dirty: bool) -> Target:
    repo = PolicyRepo.discover(policy_dir)
    if rev is None and repo.is_dirty():
        if not allow_dirty:
            raise UsageError(
                f"{policy_dir} has uncommitted changes: commit them (apply rolls out commits), "
                "or pass --allow-dirty to apply the work tree as it is"
            )
        files = read_worktree(policy_dir)
        commit = None
        result = build(files, None)
    else:
        commit = repo.resolve(rev or "HEAD")
        if not repo.has_policy_dir(commit):
            raise UsageError(f"revision {rev or 'HEAD'} has no {repo.prefix or 'policy'} directory")
        result = build(repo.read_policy(commit), commit)
    report = as_text(result.diagnostics).rstrip() if result.diagnostics else ""
    if not result.ok or result.compiled is None:
        raise PolicyInvalid(f"{report}\npolicy at {rev or 'HEAD'} is invalid; nothing applied")
    return Target(compiled=result.compiled, commit=commit, repo=repo, warnings=report)
