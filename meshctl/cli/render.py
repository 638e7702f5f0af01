"""`meshctl render kubernetes [DIR | --compiled OUT] --out DIR`: plain manifests for clusters.

Render reads only compiled output: the policy compiled here, or (`--compiled`) a directory
`meshctl compile` wrote elsewhere (in CI, say), read and hash-checked as `up` and `apply` do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from meshctl.cli.common import PolicyDirArgument, PolicyDirOption, out, policy_dir, report_diagnostics
from meshctl.errors import UsageError

if TYPE_CHECKING:
    from meshctl.compiled import CompiledMesh

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
    compiled_dir: Annotated[Path | None, typer.Option(
        "--compiled", help="Render this `meshctl compile` output (built once, e.g. by CI) as it is.",
        show_default=False)] = None,
) -> None:
    """ConfigMaps per sidecar config, Deployments with the sidecar container, Services per version."""
    from meshctl.render.kubernetes import RenderOptions, render_manifests, write_manifests

    if compiled_dir is not None:
        if rev is not None or directory is not None or dir_option is not None:
            raise UsageError("--compiled renders a compiled directory: give no DIR, --dir or --rev")
        compiled = _read_compiled(compiled_dir, namespace)
    else:
        compiled = _compile(policy_dir(directory, dir_option), rev, namespace)
    options = RenderOptions(compiled.manifest.namespace, image_prefix, sidecar_image)
    manifests = render_manifests(compiled, options)
    write_manifests(manifests, out_dir)
    out(f"wrote {len(manifests)} files to {out_dir}; apply with: kubectl apply -k {out_dir}\n")


def _read_compiled(directory: Path, namespace: str | None) -> CompiledMesh:
    from meshctl.compiled import read_compiled_dir

    compiled = read_compiled_dir(directory)  # every config checked against the manifest's hash
    if namespace is not None and namespace != compiled.manifest.namespace:
        raise UsageError(
            f"{directory} was compiled for namespace {compiled.manifest.namespace!r}, whose name its "
            f"sidecars report: set Mesh.spec.namespace to {namespace!r} and compile again "
            "(or render from the policy with --namespace)"
        )
    return compiled


def _compile(directory: Path, rev: str | None, namespace: str | None) -> CompiledMesh:
    from meshctl.compile.output import compiled_mesh
    from meshctl.pipeline import build_source

    result = build_source(directory, rev)
    compilation = result.compiled_or_raise("nothing was rendered")
    report_diagnostics(result.warnings)
    if namespace is not None and namespace != compilation.namespace:
        from meshctl.compile.compiler import compile_policy

        # Sidecars report the namespace they run in: compile their labels for that one.
        compilation = compile_policy(compilation.policy, revision=compilation.revision,
                                     source_digest=compilation.source_digest, namespace=namespace)
    return compiled_mesh(compilation)


def register(app: typer.Typer) -> None:
    app.add_typer(render_app, name="render")
