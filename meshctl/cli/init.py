"""`meshctl init [DIR]`: scaffold a small policy directory that validates clean."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meshctl.cli.common import out
from meshctl.errors import UsageError
from meshctl.fsio import write_atomic
from meshctl.schemas import SCHEMA_BASE
from meshctl.templating import render

INIT_FILES = ("mesh.yaml", "services.yaml", "routes.yaml", "access.yaml", "gateway.yaml")


def init(
    directory: Annotated[Path, typer.Argument(help="Directory to create.")] = Path("mesh.d"),
    mesh_name: Annotated[str, typer.Option("--name", help="Mesh name.")] = "demo",
    gateway_port: Annotated[int, typer.Option("--gateway-port", help="Gateway port on 127.0.0.1.")] = 8080,
    force: Annotated[bool, typer.Option("--force", help="Write even if the directory has YAML files.")] = False,
) -> None:
    """Write a working mesh.d/ (two services, a canary split, an access policy, a gateway)."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.glob("*.y*ml")) and not force:
        raise UsageError(f"{directory} already holds policy files; use --force to overwrite")
    context = {"mesh_name": mesh_name, "gateway_port": gateway_port, "schema_base": SCHEMA_BASE}
    for name in INIT_FILES:
        write_atomic(directory / name, render(f"init/{name}.j2", context))
    out(f"wrote {len(INIT_FILES)} files to {directory}; check them with: meshctl validate {directory}\n")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
