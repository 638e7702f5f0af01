"""`meshctl explain --from SERVICE METHOD URL [-H 'k: v']...`: where a request goes, and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from meshctl.cli.common import PolicyDirOption, choose, err, out, policy_dir
from meshctl.compile.compiler import CompiledMesh
from meshctl.errors import PolicyInvalid
from meshctl.explain import Question, explain, parse_header, text_report
from meshctl.pipeline import build
from meshctl.revisions import read_policy
from meshctl.validate.report import as_text


def compile_or_fail(directory: Path, rev: str | None) -> CompiledMesh:
    files, revision = read_policy(directory, rev)
    result = build(files, revision)
    if not result.ok or result.compiled is None:
        err(as_text([d for d in result.diagnostics if d.severity == "error"]).rstrip())
        raise PolicyInvalid("policy is invalid; nothing to explain")
    return result.compiled


def explain_command(
    method: Annotated[str, typer.Argument(help="HTTP method, e.g. GET.", show_default=False)],
    url: Annotated[
        str,
        typer.Argument(help="http://<service>/<path> (from a gateway: the path).", show_default=False),
    ],
    source: Annotated[str, typer.Option("--from", help="Calling service, or gateway/<name>.", show_default=False)],
    header: Annotated[list[str] | None, typer.Option("-H", "--header", help="Question header 'name: value'.")] = None,
    dir_option: PolicyDirOption = None,
    rev: Annotated[str | None, typer.Option("--rev", help="Explain this git revision's policy.")] = None,
    output_format: Annotated[str, typer.Option("--format", help="text | json")] = "text",
) -> None:
    """Show the rule, backends, timeout, retries, faults and access verdict for one request."""
    choose(output_format, ("text", "json"), "--format")
    headers = dict(parse_header(h) for h in header or [])
    compiled = compile_or_fail(policy_dir(None, dir_option), rev)
    result = explain(compiled.configs, Question(source, method, url, headers))
    if output_format == "json":
        out(json.dumps(result.as_dict(), indent=2) + "\n")
    else:
        out(text_report(result))


def register(app: typer.Typer) -> None:
    app.command("explain")(explain_command)
