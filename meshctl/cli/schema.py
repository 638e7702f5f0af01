"""`meshctl schema [KIND] [--out DIR]`: print or write the committed JSON Schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meshctl.cli.common import out
from meshctl.errors import UsageError
from meshctl.fsio import write_atomic
from meshctl.model import KINDS
from meshctl.schemas import COMPILED_SCHEMAS, all_schema_files, schema_file


def schema(
    kind: Annotated[
        str | None, typer.Argument(help="A policy kind, or sidecar, manifest, bindings (compiled output).")
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write every schema file here.")] = None,
) -> None:
    """Print one schema, or write them all with --out."""
    files = all_schema_files()
    if out_dir is not None:
        for name, text in files.items():
            write_atomic(out_dir / name, text)
        out(f"wrote {len(files)} schemas to {out_dir}\n")
        return
    if kind is None:
        out("".join(f"{name}\n" for name in files))
        return
    name = COMPILED_SCHEMAS.get(kind.lower()) or schema_file(kind)
    if name not in files:
        raise UsageError(f"unknown kind {kind!r}; one of {', '.join([*KINDS, *COMPILED_SCHEMAS])}")
    out(files[name])


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)
