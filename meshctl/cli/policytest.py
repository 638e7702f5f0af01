"""`meshctl test [DIR]`: run the policy tests in DIR/tests/*.yaml against the compiled policy."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from meshctl.cli.common import PolicyDirArgument, PolicyDirOption, err, out, policy_dir, report_diagnostics
from meshctl.errors import CheckFailed
from meshctl.pipeline import build_source
from meshctl.policytest import load_test_files, run_cases
from meshctl.policytest.cases import find_test_files
from meshctl.policytest.report import github_report, json_report, text_report
from meshctl.sources.worktree import display_path

TestFormat = Literal["text", "json", "github"]


def test_command(
    directory: PolicyDirArgument = None,
    dir_option: PolicyDirOption = None,
    rev: Annotated[
        str | None, typer.Option("--rev", help="Test this git revision's policy (tests are read from DIR/tests).")
    ] = None,
    output_format: Annotated[TestFormat, typer.Option("--format", help="Output format.")] = "text",
) -> None:
    """Run the policy tests (requests and what must happen to them) in DIR/tests/."""
    root = policy_dir(directory, dir_option)
    paths = find_test_files(root)
    cases, problems = load_test_files(paths)
    result = build_source(root, rev)
    compiled = result.compiled_or_raise("nothing was tested")
    report_diagnostics(result.warnings)
    results = run_cases(compiled.configs, cases)
    report_diagnostics(problems)
    if not paths:
        err(f"no policy tests in {display_path(root / 'tests')}/ (nothing was checked)")
    if output_format == "json":
        out(json_report(results, [p.as_dict() for p in problems]))
    elif output_format == "github":
        out(github_report(results, problems))
    elif results or problems:
        out(text_report(results))
    if problems or any(not r.ok for r in results):
        raise CheckFailed("")


def register(app: typer.Typer) -> None:
    app.command("test")(test_command)
