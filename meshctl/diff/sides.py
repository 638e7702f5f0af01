"""The two sides of a diff: which revisions they are, and their compiled configs.

BASE defaults to the applied revision (`refs/meshctl/applied`) when there is one, else `HEAD`;
TARGET defaults to the work tree. A git revision is read from git objects, never checked out.

The two sides are validated and compiled at the same time, the base in a forked child process,
where the platform forks (Linux): on a large repository each side takes seconds of CPU, and a
reviewer (or CI job) waits for the slower side only. Two commits with the same policy tree are
compiled once, and the build of a commit is cached in the git directory (`diff.cache`).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from meshctl.contract import SidecarConfig
from meshctl.diff.cache import BuildCache
from meshctl.pipeline import build
from meshctl.revisions import worktree_revision
from meshctl.sources import PolicyFile
from meshctl.sources.git import APPLIED_REF, GitError, PolicyRepo
from meshctl.sources.worktree import read_worktree
from meshctl.validate.diagnostics import Diagnostic

WORKTREE = "work tree"
INDEX = "index"


@dataclass
class SideBuild:
    """What a diff needs of one build: small enough to pass between processes."""

    revision: str | None
    configs: dict[str, SidecarConfig] | None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.configs is not None


@dataclass
class Side:
    ref: str  # as the user named it: "HEAD", "main~1", "work tree", "refs/meshctl/applied"
    commit: str | None  # the commit id, None for the work tree
    built: SideBuild

    @property
    def revision(self) -> str:
        """The compiled revision: a commit id, or the work tree's content digest with -dirty."""
        return self.built.revision or self.commit or WORKTREE

    def label(self, repo: PolicyRepo | None) -> str:
        if self.commit is None:
            return self.ref  # "work tree" or "index"
        short = repo.short(self.commit) if repo is not None else self.commit[:12]
        return short if self.ref in (self.commit, short) else f"{self.ref} ({short})"


def default_base(repo: PolicyRepo) -> str:
    if repo.read_ref(APPLIED_REF) is not None:
        return APPLIED_REF
    if repo.try_resolve("HEAD") is None:
        raise GitError("the repository has no commits yet: there is no HEAD to compare with")
    return "HEAD"


def build_files(files: list[PolicyFile], revision: str | None) -> SideBuild:
    result = build(files, revision)
    if result.compiled is None:
        return SideBuild(None, None, list(result.diagnostics))
    return SideBuild(result.compiled.revision, result.compiled.configs, list(result.diagnostics))


EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's id of an empty tree


class _Revision:
    """One side read from git: its files, and its build from the cache when there is one.

    A revision without the policy directory (before the mesh was added, or after it was
    removed) is an empty mesh: every sidecar of the other side shows as added or removed.
    """

    def __init__(self, repo: PolicyRepo, ref: str, cache: BuildCache | None, *, tree_ish: str | None = None) -> None:
        self.repo, self.ref, self.cache = repo, ref, cache
        self.commit = repo.resolve(ref) if tree_ish is None else None
        self.source = self.commit or tree_ish or ref  # what git reads the files from
        self.tree = repo.policy_tree(self.source) or EMPTY_TREE
        self.name = self.commit or f"{self.tree[:12]}-staged"  # the revision the build is named by
        self.spelling = repo.display_path("")
        self.cached: SideBuild | None = None
        if self.tree == EMPTY_TREE:
            self.cached = SideBuild(self.name, {}, [])
        elif cache is not None:
            self.cached = cache.get(self.tree, self.spelling)

    def build(self) -> SideBuild:
        return build_files(self.repo.read_policy(self.source), self.name)

    def remember(self, built: SideBuild) -> SideBuild:
        if self.cache is not None and self.cached is None:
            self.cache.put(self.tree, self.spelling, built)
        # A cached build may come from another commit with the same tree: name this one.
        return SideBuild(self.name if built.ok else None, built.configs, built.diagnostics)


def load_sides(
    policy_dir: Path, base: str | None, target: str | None, *, use_cache: bool = True, staged: bool = False
) -> tuple[Side, Side, PolicyRepo]:
    """The two sides; TARGET None is the work tree, or with `staged` the index (what `git commit`
    would record now)."""
    repo = PolicyRepo.discover(policy_dir)
    cache = BuildCache(repo.git_dir() / "meshctl" / "builds") if use_cache else None
    base_rev = _Revision(repo, base or default_base(repo), cache)
    target_rev = _Revision(repo, target, cache) if target is not None else None
    if staged:
        target, target_rev = INDEX, _Revision(repo, INDEX, cache, tree_ish=repo.index_tree())
    worktree_files: list[PolicyFile] = []
    if target_rev is None:
        clean_head = worktree_revision(policy_dir)
        if clean_head is not None:  # a clean work tree is HEAD: its build may be cached
            target_rev = _Revision(repo, clean_head, cache)
        else:  # read before any fork, so a user mistake stops here, cleanly
            worktree_files = read_worktree(policy_dir)

    def build_target() -> SideBuild:
        if target_rev is None:
            return build_files(worktree_files, None)
        return target_rev.cached or target_rev.build()

    if base_rev.cached is not None:
        built_base, built_target = base_rev.cached, build_target()
    elif target_rev is not None and (target_rev.tree == base_rev.tree or target_rev.cached):
        built_target = build_target()
        built_base = built_target if target_rev.tree == base_rev.tree else base_rev.build()
    else:
        built_base, built_target = both(base_rev.build, build_target)
    built_base = base_rev.remember(built_base)
    if target_rev is not None:
        built_target = target_rev.remember(built_target)
    return (
        Side(base_rev.ref, base_rev.commit, built_base),
        Side(target or WORKTREE, target_rev.commit if target_rev and target else None, built_target),
        repo,
    )


def can_fork() -> bool:
    """Fork only where it is cheap and safe: Linux, two cores, and no other thread whose locks
    the child could inherit held (the CLI has none; a test runner's worker may)."""
    return sys.platform == "linux" and (os.cpu_count() or 1) >= 2 and _os_threads() == 1


def _os_threads() -> int:
    """Threads of this process as the kernel counts them (also those not started by `threading`)."""
    import psutil

    try:
        return psutil.Process().num_threads()
    except psutil.Error:
        return threading.active_count()


_PENDING: list[Callable[[], SideBuild]] = []  # what the forked worker runs: inherited, not pickled


def _run_pending() -> SideBuild:
    return _PENDING[0]()


def both(
    first: Callable[[], SideBuild], second: Callable[[], SideBuild], *, fork: bool | None = None
) -> tuple[SideBuild, SideBuild]:
    """Run `first` in a forked worker while this process runs `second` (one after the other
    where forking is not possible; `fork` overrides the check). The worker inherits `first` at
    the fork (closures need no pickling); only its result comes back."""
    if not (can_fork() if fork is None else fork):
        return first(), second()
    _PENDING[:] = [first]
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
    try:
        future = pool.submit(_run_pending)  # forks here, with `first` in place
        second_result = second()
        try:
            first_result = future.result()
        except BrokenProcessPool:
            raise RuntimeError("the base build died") from None
        except Exception as exc:  # a bug in the worker: re-raised here with its traceback
            remote = exc.__cause__ or ""  # concurrent.futures' _RemoteTraceback
            raise RuntimeError(f"the base build failed:\n{remote}\n{type(exc).__name__}: {exc}") from None
    except BaseException:
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.kill()  # nobody will read its result
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _PENDING.clear()
    return first_result, second_result
