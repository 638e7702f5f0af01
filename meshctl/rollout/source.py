"""Which policy an apply rolls out: a git revision (read from git objects), or the dirty work
tree when the user allows it. Uncommitted changes are refused by default: what runs should be
what a reviewer saw."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from meshctl.compiled import CompiledMesh, read_compiled_dir
from meshctl.errors import UsageError
from meshctl.sources.git import GitError, PolicyRepo

if TYPE_CHECKING:
    from meshctl.validate.diagnostics import Diagnostic


@dataclass(frozen=True)
class RolloutTarget:
    """What an apply rolls out: a compiled mesh and where it came from."""

    compiled: CompiledMesh
    commit: str | None  # None: the work tree, not a commit
    repo: PolicyRepo | None
    warnings: list[Diagnostic]


def compiled_target(policy_dir: Path, directory: Path) -> RolloutTarget:
    """A directory `meshctl compile` wrote (in CI, say): its bytes as they are, hash-checked.
    Its revision is the applied commit in git too when the policy's repository has it."""
    output = read_compiled_dir(directory)
    repo: PolicyRepo | None = None
    commit = None
    try:
        repo = PolicyRepo.discover(policy_dir)
        if not output.revision.endswith("-dirty") and repo.resolve(output.revision) == output.revision:
            commit = output.revision
    except (GitError, UsageError):
        pass
    return RolloutTarget(compiled=output, commit=commit, repo=repo, warnings=[])


def compile_target(policy_dir: Path, rev: str | None, *, allow_dirty: bool) -> RolloutTarget:
    from meshctl.compile.output import compiled_mesh
    from meshctl.pipeline import build_source

    repo = PolicyRepo.discover(policy_dir)
    if rev is None and repo.is_dirty():
        if not allow_dirty:
            raise UsageError(
                f"{policy_dir} has uncommitted changes: commit them (apply rolls out commits), "
                "or pass --allow-dirty to apply the work tree as it is"
            )
        commit = None
        result = build_source(policy_dir)  # dirty: named by its content digest
    else:
        commit = repo.resolve(rev or "HEAD")
        if not repo.has_policy_dir(commit):
            raise UsageError(f"revision {rev or 'HEAD'} has no {repo.prefix or 'policy'} directory")
        result = build_source(policy_dir, commit)
    where = "the work tree" if commit is None else (rev or "HEAD")
    compiled = result.compiled_or_raise("nothing applied", where=where)
    return RolloutTarget(compiled=compiled_mesh(compiled), commit=commit, repo=repo,
                  warnings=result.warnings)
