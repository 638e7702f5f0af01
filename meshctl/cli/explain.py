"""`meshctl explain --from SERVICE METHOD URL [-H 'k: v']...`: where a request goes, and why."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from meshctl.cli.common import PolicyDirOption, TextOrJson, out, policy_dir, report_diagnostics
from meshctl.explain import Question, explain, parse_header, text_report
from meshctl.pipeline import build_source


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
    output_format: Annotated[TextOrJson, typer.Option("--format", help="Output format.")] = "text",
) -> None:
    """Show the rule, backends, timeout, retries, faults and access verdict for one request."""
    headers = dict(parse_header(h) for h in header or [])
    built = build_source(policy_dir(None, dir_option), rev)
    compiled = built.compiled_or_raise("nothing to explain")
    report_diagnostics(built.warnings)
    result = explain(compiled.configs, Question(source, method, url, headers))
    if output_format == "json":
        out(json.dumps(result.as_dict(), indent=2) + "\n")
    else:
        out(text_report(result))


def register(app: typer.Typer) -> None:
    app.command("explain")(explain_command)
