"""`meshctl compile [DIR] --out DIR`: one JSON config per sidecar plus a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meshctl.cli.common import PolicyDirArgument, PolicyDirOption, err, out, policy_dir
from meshctl.compile.output import write_compiled
from meshctl.errors import PolicyInvalid
from meshctl.pipeline import BuildResult, build
from meshctl.revisions import read_policy
from meshctl.validate.report import as_text


def build_or_fail(result: BuildResult) -> None:
    """Report diagnostics on stderr; raise PolicyInvalid (exit 1) when the policy has errors."""
    if result.diagnostics:
        err(as_text(result.diagnostics).rstrip())
    if not result.ok:
        raise PolicyInvalid("policy is invalid; nothing was compiled")


def compile_command(
    directory: PolicyDirArgument = None,
    dir_option: PolicyDirOption = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("out"),
    rev: Annotated[
        str | None, typer.Option("--rev", help="Compile this git revision instead of the work tree.")
    ] = None,
) -> None:
    """Validate, then compile the policy into one config per sidecar."""
    files, revision = read_policy(policy_dir(directory, dir_option), rev)
    result = build(files, revision)
    build_or_fail(result)
    assert result.compiled is not None
    manifest = write_compiled(result.compiled, out_dir)
    sidecars = manifest["sidecars"]
    out(f"compiled revision {result.compiled.revision}: {len(sidecars)} sidecar config(s) in {out_dir}\n")  # type: ignore[arg-type]


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_command)
