"""`meshctl validate [DIR]`: schema + semantic checks, every problem with file:line:column."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from meshctl.cli.common import PolicyDirArgument, PolicyDirOption, out, policy_dir
from meshctl.errors import PolicyInvalid
from meshctl.pipeline import load_policy
from meshctl.sources.worktree import read_worktree
from meshctl.validate.report import REPORTERS

ValidateFormat = Literal["text", "json", "github", "sarif"]  # the reporters (a test holds them equal)
FormatOption = Annotated[ValidateFormat, typer.Option("--format", help="Output format.")]


def validate(
    directory: PolicyDirArgument = None,
    dir_option: PolicyDirOption = None,
    output_format: FormatOption = "text",
    strict: Annotated[bool, typer.Option("--strict", help="Treat warnings as errors.")] = False,
) -> None:
    """Check the policy directory against the JSON Schemas and the semantic rules."""
    files = read_worktree(policy_dir(directory, dir_option))
    result = load_policy(files)
    out(REPORTERS[output_format](result.diagnostics))
    if not result.ok or (strict and result.diagnostics):
        raise PolicyInvalid("")


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)

