"""`meshctl import istio|gateway-api FILE|DIR... --out DIR`: a mesh.d from Istio or Gateway API objects."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meshctl.cli.common import TextOrJson, out
from meshctl.errors import CheckFailed, PolicyInvalid
from meshctl.importers.report import REPORTERS
from meshctl.importers.run import ImportSource, import_policy


def import_command(
    source: Annotated[ImportSource, typer.Argument(help="What the inputs are.", show_default=False)],
    inputs: Annotated[list[Path], typer.Argument(help="YAML files or directories.")],
    out_dir: Annotated[Path, typer.Option("--out", help="The mesh.d directory to write.")] = Path("mesh.d"),
    output_format: Annotated[TextOrJson, typer.Option("--format", help="Output format of the report.")] = "text",
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any field was dropped.")] = False,
) -> None:
    """Convert Istio or Gateway API objects into meshctl policy, reporting every field not carried over."""
    report = import_policy(source, inputs, out_dir)
    out(REPORTERS[output_format](report))
    if report.errors:
        raise PolicyInvalid("")
    if strict and report.lost:
        raise CheckFailed(f"--strict: {len(report.lost)} field(s) were not carried over")


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)
