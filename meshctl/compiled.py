"""A compiled directory: manifest.json plus one config per sidecar, as `meshctl compile` writes it.

What runtime, rollout and render take as input: built once (by CI, say), deployed as the same
bytes. Reading checks every config against the manifest's hash; a missing, changed or unreadable
file is a UsageError (exit 2) naming it. Writing replaces the whole directory in one rename.
This module imports the contract and the standard library only: `status` and the supervisor
never load the policy model or a YAML parser.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from meshctl.contract import (
    ContractError,
    DeploymentManifest,
    SidecarConfig,
    config_hash,
    parse_manifest,
    parse_sidecar_config,
)
from meshctl.errors import UsageError

MANIFEST = "manifest.json"


def sidecar_file(name: str) -> str:
    """Relative path of a sidecar's config: services/<name>.json, gateways/<name>.json."""
    if name.startswith("gateway/"):
        return f"gateways/{name.removeprefix('gateway/')}.json"
    return f"services/{name}.json"


@dataclass
class CompiledMesh:
    """The compiled mesh: a manifest and the exact text of each sidecar config it lists.

    The one thing runtime, rollout and render read (and what a compiled directory holds)."""

    manifest: DeploymentManifest
    rendered: dict[str, str]  # sidecar name ("reviews", "gateway/public") -> canonical JSON
    _configs: dict[str, SidecarConfig] = field(default_factory=dict, repr=False)

    @property
    def revision(self) -> str:
        return self.manifest.revision

    @property
    def configs(self) -> dict[str, SidecarConfig]:
        if not self._configs and self.rendered:
            self._configs.update({n: parse_sidecar_config(t) for n, t in self.rendered.items()})
        return self._configs


def read_compiled_dir(directory: Path) -> CompiledMesh:
    """The compiled output in `directory`, every config checked against the manifest."""
    path = directory / MANIFEST
    try:
        manifest = parse_manifest(path.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{path} is missing: {directory} is not a `meshctl compile` output") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ContractError as exc:
        raise UsageError(f"{path}: {exc}") from None
    rendered: dict[str, str] = {}
    configs: dict[str, SidecarConfig] = {}
    for name, entry in sorted(manifest.sidecars.items()):
        file = directory / entry.file
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise UsageError(f"{file}: cannot read ({exc.strerror or exc}); the manifest lists it "
                             f"for {name}") from None
        if config_hash(data) != entry.sha256:
            raise UsageError(
                f"{file}: its hash {config_hash(data)} is not the manifest's {entry.sha256}: "
                "the directory was changed after `meshctl compile`; compile it again"
            )
        try:
            config = parse_sidecar_config(data)
        except ContractError as exc:
            raise UsageError(f"{file}: {exc}") from None
        if config.revision != manifest.revision:
            raise UsageError(f"{file}: revision {config.revision} is not the manifest's "
                             f"{manifest.revision}")
        rendered[name] = data.decode()
        configs[name] = config
    return CompiledMesh(manifest, rendered, configs)


def manifest_json(manifest: DeploymentManifest) -> str:
    return json.dumps(manifest.model_dump(mode="json"), indent=1, sort_keys=True) + "\n"


def write_compiled_dir(output: CompiledMesh, out_dir: Path) -> None:
    """Replace `out_dir` with `output`, all or nothing."""
    try:
        _replace(output, out_dir.resolve())
    except OSError as exc:
        raise UsageError(f"cannot write {out_dir}: {exc.strerror or exc}") from None


def _replace(output: CompiledMesh, out_dir: Path) -> None:
    if out_dir.exists() and not (out_dir / MANIFEST).is_file() and any(out_dir.iterdir()):
        raise UsageError(f"{out_dir} exists and is not a meshctl compile output; refusing to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.new.", dir=out_dir.parent))
    try:
        for name, text in output.rendered.items():
            target = staging / sidecar_file(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        (staging / MANIFEST).write_text(manifest_json(output.manifest), encoding="utf-8")
        if out_dir.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            os.replace(out_dir, retired / "out")
            os.replace(staging, out_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
