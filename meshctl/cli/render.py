"""`meshctl render kubernetes [DIR] --out DIR`: plain manifests for clusters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meshctl.cli.common import PolicyDirArgument, PolicyDirOption, out, policy_dir, report_diagnostics
from meshctl.pipeline import build_source

render_app = typer.Typer(help="Render the compiled mesh for another runtime.", no_args_is_help=True)


@render_app.command("kubernetes")
def kubernetes(
    directory: PolicyDirArgument = None,
    dir_option: PolicyDirOption = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the manifests.")] = Path("k8s"),
    namespace: Annotated[str | None, typer.Option(
        "--namespace", "-n", help="Namespace of every object (default: the Mesh's spec.namespace).")] = None,
    image_prefix: Annotated[str, typer.Option(
        "--image-prefix", help="App images are <prefix><service>:<version>.")] = "",
    sidecar_image: Annotated[str, typer.Option(
        "--sidecar-image", help="Image with meshctl installed.")] = "meshctl:latest",
    rev: Annotated[str | None, typer.Option("--rev", help="Render this git revision.")] = None,
) -> None:
    """ConfigMaps per sidecar config, Deployments with the sidecar container, Services per version."""
    from meshctl.compile.compiler import compile_policy
    from meshctl.render.kubernetes import RenderOptions, render_manifests, write_manifests

    result = build_source(policy_dir(directory, dir_option), rev)
    compiled = result.compiled_or_raise("nothing was rendered")
    report_diagnostics(result.warnings)
    if namespace is not None and namespace != compiled.namespace:
        # Sidecars report the namespace they run in: compile their labels for that one.
        compiled = compile_policy(compiled.policy, revision=compiled.revision,
                                  source_digest=compiled.source_digest, namespace=namespace)
    from meshctl.compile.output import compiled_mesh

    options = RenderOptions(compiled.namespace, image_prefix, sidecar_image)
    manifests = render_manifests(compiled_mesh(compiled), options)
    write_manifests(manifests, out_dir)
    out(f"wrote {len(manifests)} files to {out_dir}; apply with: kubectl apply -k {out_dir}\n")


def register(app: typer.Typer) -> None:
    app.add_typer(render_app, name="render")
