"""Where policy files come from: the work tree (worktree.py) or a git revision (git.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class PolicyFile:
    """One policy file: its path as the user would type it, and its text."""

    path: str
    text: str
    error: str | None = None  # set when the file could not be read as UTF-8 text


def is_policy_file(relative: str) -> bool:
    """`*.yaml`/`*.yml`, no part starting with '.', and not under the policy tests directory."""
    parts = relative.replace("\\", "/").split("/")
    if any(part.startswith(".") for part in parts):
        return False
    if parts[0] == "tests":
        return False
    return parts[-1].endswith((".yaml", ".yml"))


def decode_policy_file(path: str, data: bytes) -> PolicyFile:
    try:
        return PolicyFile(path, data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        return PolicyFile(path, "", error=f"not UTF-8 text (byte {exc.start})")
