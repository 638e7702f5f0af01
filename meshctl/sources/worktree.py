"""Read the policy files of a directory in the work tree."""

from __future__ import annotations

import os
from pathlib import Path

from meshctl.errors import UsageError
from meshctl.sources import PolicyFile, decode_policy_file, is_policy_file


def display_path(path: Path) -> str:
    """The path as the user would type it from the current directory."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive
        return str(path)


def read_worktree(policy_dir: Path) -> list[PolicyFile]:
    if not policy_dir.exists():
        raise UsageError(f"policy directory {display_path(policy_dir)} does not exist")
    if not policy_dir.is_dir():
        raise UsageError(f"{display_path(policy_dir)} is not a directory")
    files = []
    for path in sorted(policy_dir.rglob("*")):
        relative = path.relative_to(policy_dir).as_posix()
        if not path.is_file() or not is_policy_file(relative):
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {display_path(path)}: {exc.strerror}") from None
        files.append(decode_policy_file(display_path(path), data))
    return files
