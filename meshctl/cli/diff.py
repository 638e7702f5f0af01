"""`meshctl diff [BASE [TARGET]]`: what a change does to each sidecar, in a reviewer's words."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from meshctl.cli.common import PolicyDirOption, out, policy_dir
from meshctl.diff import REPORTERS, diff_meshes
from meshctl.diff.sides import Side, load_sides
from meshctl.errors import CheckFailed, PolicyInvalid, UsageError

DiffFormat = Literal["text", "markdown", "json"]  # the reporters (a test holds them equal)


def _require_valid(side: Side, name: str, label: str) -> None:
    if not side.built.ok:
        raise PolicyInvalid("not compared", side.built.diagnostics, where=f"{name} {label}")


def diff(
    base: Annotated[
        str | None,
        typer.Argument(help="Base revision (default: the applied revision, else HEAD).", show_default=False),
    ] = None,
    target: Annotated[
        str | None,
        typer.Argument(help="Target revision (default: the work tree).", show_default=False),
    ] = None,
    dir_option: PolicyDirOption = None,
    output_format: Annotated[DiffFormat, typer.Option("--format", help="Output format.")] = "text",
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when there are changes (as git diff).")
    ] = False,
    staged: Annotated[
        bool, typer.Option("--staged", "--cached", help="Compare BASE with the index (what a commit would record).")
    ] = False,
    no_cache: Annotated[
        bool,
        typer.Option("--no-cache", help="Compile every revision again, ignoring cached builds."),
    ] = False,
) -> None:
    """Compile BASE and TARGET and show what changes for each sidecar."""
    if staged and target is not None:
        raise UsageError("give either a TARGET revision or --staged, not both")
    base_side, target_side, repo = load_sides(
        policy_dir(None, dir_option), base, target, use_cache=not no_cache, staged=staged
    )
    base_label, target_label = base_side.label(repo), target_side.label(repo)
    _require_valid(base_side, "base", base_label)
    _require_valid(target_side, "target", target_label)
    assert base_side.built.configs is not None and target_side.built.configs is not None
    changes = diff_meshes(base_side.built.configs, target_side.built.configs)
    if output_format == "json":
        out(REPORTERS["json"](base_side.revision, target_side.revision, changes))
    else:
        out(REPORTERS[output_format](base_label, target_label, changes))
    if exit_code and changes:
        raise CheckFailed("")


def register(app: typer.Typer) -> None:
    app.command("diff")(diff)
