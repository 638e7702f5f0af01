"""`meshctl compile [DIR] --out DIR`: one JSON config per sidecar plus a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meshctl.cli.common import PolicyDirArgument, PolicyDirOption, out, policy_dir, report_diagnostics
from meshctl.compile.output import write_compiled
from meshctl.pipeline import build_source


def compile_command(
    directory: PolicyDirArgument = None,
    dir_option: PolicyDirOption = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("out"),
    rev: Annotated[
        str | None, typer.Option("--rev", help="Compile this git revision instead of the work tree.")
    ] = None,
) -> None:
    """Validate, then compile the policy into one config per sidecar."""
    result = build_source(policy_dir(directory, dir_option), rev)
    compiled = result.compiled_or_raise("nothing was compiled")
    report_diagnostics(result.warnings)
    manifest = write_compiled(compiled, out_dir)
    out(f"compiled revision {compiled.revision}: {len(manifest.sidecars)} sidecar config(s) in {out_dir}\n")


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_command)
