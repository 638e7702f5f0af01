"""Errors that reach the user, each with the exit code the CLI returns for it.

Exit codes everywhere: 0 ok; 1 policy invalid, changes found, test or gate failed;
2 usage or environment error; 3 internal error.
"""

from __future__ import annotations


class MeshctlError(Exception):
    """A failure with a message meant for the user (no traceback is shown)."""

    exit_code = 3

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class PolicyInvalid(MeshctlError):
    """The policy has errors; the diagnostics were already reported."""

    exit_code = 1


class CheckFailed(MeshctlError):
    """A check the user asked for failed: a policy test, a rollout gate, `--exit-code` changes."""

    exit_code = 1


class UsageError(MeshctlError):
    """Bad arguments or environment: missing directory, unknown revision, no git."""

    exit_code = 2
