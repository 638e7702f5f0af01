"""All of meshctl's git access: revisions, policy files read from git objects, refs.

Policy at a revision is read straight from the object database (`git ls-tree` + one
`git cat-file --batch`), so nothing is ever checked out over the user's work tree and a shallow
clone works wherever the revision itself is present. `git` runs with a clean environment: a
`GIT_DIR` or `GIT_INDEX_FILE` inherited from a hook or an editor must not redirect it.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from meshctl.errors import UsageError
from meshctl.sources import PolicyFile, decode_policy_file, is_policy_file
from meshctl.sources.worktree import display_path

APPLIED_REF = "refs/meshctl/applied"

# Variables that describe how to reach a remote or where git lives, not which repository to use.
_KEEP_GIT_ENV = frozenset(
    {
        "GIT_EXEC_PATH",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_SSL_CAINFO",
        "GIT_SSL_NO_VERIFY",
        "GIT_ASKPASS",
        "GIT_ALLOW_PROTOCOL",
        "GIT_CONFIG_NOSYSTEM",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_AUTHOR_DATE",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "GIT_COMMITTER_DATE",
    }
)


class GitError(UsageError):
    """git is missing, the directory is not in a repository, or a revision does not exist."""


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in _KEEP_GIT_ENV}
    env["LC_ALL"] = "C"  # stable messages we can match on
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def run_git(
    args: list[str], cwd: Path, *, input: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run `git ARGS` in `cwd`; raise GitError with git's own message when it fails."""
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=input,
            capture_output=True,
            env=clean_env(),
            check=False,
        )
    except FileNotFoundError:
        if not cwd.is_dir():
            raise GitError(f"{cwd} does not exist") from None
        raise GitError("git is not installed (or not on PATH); it is needed to read revisions") from None
    except NotADirectoryError:
        raise GitError(f"{cwd} is not a directory") from None
    if check and proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip() or f"exit code {proc.returncode}"
        raise GitError(f"git {args[0]} failed: {detail}")
    return proc


def _out(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stdout.decode(errors="replace").strip()


@dataclass(frozen=True)
class PolicyRepo:
    """A policy directory inside a git repository.

    `root` is the repository's top level; `prefix` the policy directory's path inside it
    (POSIX, "" when the policy directory is the root); `policy_dir` its absolute path, from
    which file paths in messages are spelled relative to the current directory.
    """

    root: Path
    prefix: str
    policy_dir: Path

    @classmethod
    def discover(cls, policy_dir: Path) -> PolicyRepo:
        """Find the repository holding `policy_dir` (which may be absent from the work tree)."""
        probe = policy_dir.resolve()
        while not probe.is_dir():  # a deleted policy dir: ask its nearest existing parent
            if probe.parent == probe:
                break
            probe = probe.parent
        proc = run_git(["rev-parse", "--show-toplevel"], probe, check=False)
        if proc.returncode != 0:
            raise GitError(f"{policy_dir} is not inside a git repository")
        root = Path(_out(proc)).resolve()
        try:
            rel = policy_dir.resolve().relative_to(root)
        except ValueError:
            raise GitError(f"{policy_dir} is outside the repository at {root}") from None
        prefix = rel.as_posix()
        return cls(root=root, prefix="" if prefix == "." else prefix, policy_dir=root / rel)

    # --- revisions ------------------------------------------------------------------------

    def resolve(self, rev: str) -> str:
        """The full commit id `rev` names; GitError (exit 2) if it names no commit here."""
        if not rev or rev.startswith("-"):
            raise GitError(f"unknown revision {rev!r}")
        proc = run_git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], self.root, check=False)
        if proc.returncode != 0:
            hint = " (the clone may be too shallow to hold it)" if self.is_shallow() else ""
            raise GitError(f"unknown revision {rev!r}: no such commit in {self.root}{hint}")
        return _out(proc)

    def try_resolve(self, rev: str) -> str | None:
        proc = run_git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], self.root, check=False)
        return _out(proc) if proc.returncode == 0 else None

    def short(self, commit: str) -> str:
        return _out(run_git(["rev-parse", "--short", commit], self.root))

    def git_dir(self) -> Path:
        """The repository's (common) git directory, for meshctl's own caches."""
        proc = run_git(["rev-parse", "--path-format=absolute", "--git-common-dir"], self.root)
        return Path(_out(proc))

    def policy_tree(self, commit: str) -> str | None:
        """The tree id of the policy directory at `commit` (its content hash), None if absent."""
        if not self.prefix:
            proc = run_git(["rev-parse", "--verify", "--quiet", f"{commit}^{{tree}}"], self.root, check=False)
            return _out(proc) or None
        # One call that also tells a directory from a file of the same name.
        out = _out(run_git(["ls-tree", "-z", "--full-tree", commit, "--", self.prefix], self.root))
        meta, _, _ = out.partition("\t")
        fields = meta.split(" ")
        return fields[2] if len(fields) == 3 and fields[1] == "tree" else None

    def index_tree(self) -> str:
        """A tree of what the index holds now (`git write-tree`: objects only, no ref moves)."""
        proc = run_git(["write-tree"], self.root, check=False)
        if proc.returncode != 0:
            detail = proc.stderr.decode(errors="replace").strip()
            raise GitError(f"cannot read the index (unresolved merge conflicts?): {detail}")
        return _out(proc)

    def has_policy_dir(self, commit: str) -> bool:
        return self.policy_tree(commit) is not None

    def is_shallow(self) -> bool:
        proc = run_git(["rev-parse", "--is-shallow-repository"], self.root, check=False)
        return _out(proc) == "true"

    # --- reading policy at a revision -----------------------------------------------------

    def read_policy(self, commit: str) -> list[PolicyFile]:
        """Every policy file under the policy directory at `commit`, sorted by path.

        The same files the work tree reader takes (`is_policy_file`): `*.yaml`/`*.yml`, nothing
        whose name starts with ".", nothing under `tests/`.
        """
        entries = self.list_policy_blobs(commit)
        blobs = self.cat_blobs([oid for _, oid in entries])
        return [decode_policy_file(self.display_path(rel), data) for (rel, _), data in zip(entries, blobs, strict=True)]

    def list_policy_blobs(self, commit: str) -> list[tuple[str, str]]:
        """(path relative to the policy dir, blob id) of policy files, sorted by path."""
        args = ["ls-tree", "-r", "-z", "--full-tree", commit]
        if self.prefix:
            args += ["--", self.prefix + "/"]
        out = run_git(args, self.root).stdout
        found: list[tuple[str, str]] = []
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, raw_path = record.partition(b"\t")
            mode, kind, oid = meta.decode().split(" ")
            if kind != "blob" or mode == "120000":  # submodules and symlinks are not policy
                continue
            path = raw_path.decode(errors="replace")
            rel = path[len(self.prefix) + 1 :] if self.prefix else path
            if is_policy_file(rel):
                found.append((rel, oid))
        found.sort()
        return found

    def cat_blobs(self, oids: list[str]) -> list[bytes]:
        """Contents of many blobs through one `git cat-file --batch` process."""
        if not oids:
            return []
        out = run_git(["cat-file", "--batch"], self.root, input="".join(f"{o}\n" for o in oids).encode()).stdout
        blobs: list[bytes] = []
        pos = 0
        for oid in oids:
            header_end = out.index(b"\n", pos)
            header = out[pos:header_end].decode()
            fields = header.split(" ")
            if len(fields) != 3:
                raise GitError(f"cannot read object {oid}: {header}")
            size = int(fields[2])
            body = out[header_end + 1 : header_end + 1 + size]
            blobs.append(body)
            pos = header_end + 1 + size + 1  # trailing LF after each object
        return blobs

    def display_path(self, rel: str) -> str:
        """A path relative to the policy dir, as the user would type it from the cwd."""
        return display_path(self.policy_dir / rel)

    # --- work tree state ------------------------------------------------------------------

    def is_dirty(self) -> bool:
        """True when the work tree or index differs from HEAD under the policy dir.

        Untracked policy files count: `apply` must not skip a file the user forgot to add. So do
        git-ignored ones that the work-tree reader would read (it does not consult .gitignore).
        """
        args = ["status", "--porcelain", "-z", "--untracked-files=all", "--ignored=matching", "--", self.prefix or "."]
        for entry in run_git(args, self.root).stdout.split(b"\0"):
            if not entry:
                continue
            state, path = entry[:2], entry[3:].decode(errors="replace")
            if state != b"!!":
                return True
            rel = path[len(self.prefix) + 1 :] if self.prefix else path
            if rel.endswith("/") or is_policy_file(rel):  # an ignored directory may hold policy
                return True
        return False

    # --- refs -----------------------------------------------------------------------------

    def read_ref(self, ref: str = APPLIED_REF) -> str | None:
        """Commit id a ref points at, or None when the ref does not exist."""
        return self.try_resolve(ref) if self._ref_exists(ref) else None

    def _ref_exists(self, ref: str) -> bool:
        proc = run_git(["show-ref", "--verify", "--quiet", ref], self.root, check=False)
        return proc.returncode == 0

    def update_ref(self, commit: str, message: str, *, ref: str = APPLIED_REF, expect_old: str | None = None) -> None:
        """Point `ref` at `commit`, keeping a reflog (its history). `expect_old` guards races:
        the update fails if the ref moved meanwhile ("" = must not exist yet)."""
        args = ["update-ref", "--create-reflog", "-m", message, ref, commit]
        if expect_old is not None:
            args.append(expect_old or "0" * 40)
        run_git(args, self.root)

    def delete_ref(self, ref: str = APPLIED_REF) -> None:
        if self._ref_exists(ref):
            run_git(["update-ref", "-d", ref], self.root)

    def ref_history(self, ref: str = APPLIED_REF) -> list[tuple[str, str]]:
        """(commit, message) of each update of `ref`, newest first (from its reflog)."""
        if not self._ref_exists(ref):
            return []
        proc = run_git(["reflog", "show", "--format=%H%x00%gs", ref, "--"], self.root, check=False)
        if proc.returncode != 0:
            return []
        rows = []
        for line in proc.stdout.decode(errors="replace").splitlines():
            commit, _, message = line.partition("\0")
            rows.append((commit, message))
        return rows
