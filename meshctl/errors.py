"""Errors that reach the user, each with the exit code the CLI returns for it.

Exit codes everywhere: 0 ok; 1 policy invalid, changes found, test or gate failed;
2 usage or environment error; 3 internal error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class MeshctlError(Exception):
    """A failure with a message meant for the user (no traceback is shown)."""

    exit_code = 3

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class PolicyInvalid(MeshctlError):
    """The policy has errors. `diagnostics` (validate's `Diagnostic` values) are reported by the
    CLI's one error boundary with validate's text reporter; a lower layer never renders them."""

    exit_code = 1

    def __init__(self, consequence: str, diagnostics: Sequence[Any] = (), *, where: str = "") -> None:
        self.diagnostics = tuple(diagnostics)
        errors = sum(1 for d in self.diagnostics if getattr(d, "severity", "error") == "error")
        message = consequence
        if self.diagnostics:
            prefix = f"{where}: " if where else ""
            message = f"{prefix}policy is invalid ({errors} error{'s' if errors != 1 else ''}); {consequence}"
        super().__init__(message)


class CheckFailed(MeshctlError):
    """A check the user asked for failed: a policy test, a rollout gate, `--exit-code` changes."""

    exit_code = 1


class UsageError(MeshctlError):
    """Bad arguments or environment: missing directory, unknown revision, no git."""

    exit_code = 2
