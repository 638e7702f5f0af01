"""Write compiled output: manifest plus one JSON file per sidecar, all or nothing."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from meshctl import contract
from meshctl.compile.compiler import CompiledMesh, config_hash, sidecar_file
from meshctl.errors import UsageError

MANIFEST = "manifest.json"


def manifest(compiled: CompiledMesh, rendered: dict[str, str]) -> dict[str, object]:
    return {
        "schema_version": contract.SCHEMA_VERSION,
        "revision": compiled.revision,
        "source_digest": compiled.source_digest,
        "sidecars": {
            name: {
                "file": sidecar_file(name),
                "kind": compiled.configs[name].kind,
                "sha256": config_hash(text),
            }
            for name, text in rendered.items()
        },
    }


def write_compiled(compiled: CompiledMesh, out_dir: Path) -> dict[str, object]:
    """Replace `out_dir` with the compiled output; returns the manifest written."""
    try:
        return _replace_output(compiled, out_dir.resolve())
    except OSError as exc:
        raise UsageError(f"cannot write {out_dir}: {exc.strerror or exc}") from None


def _replace_output(compiled: CompiledMesh, out_dir: Path) -> dict[str, object]:
    rendered = compiled.rendered()
    if out_dir.exists() and not (out_dir / MANIFEST).is_file() and any(out_dir.iterdir()):
        raise UsageError(f"{out_dir} exists and is not a meshctl compile output; refusing to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.new.", dir=out_dir.parent))
    try:
        for name, text in rendered.items():
            target = staging / sidecar_file(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        data = manifest(compiled, rendered)
        (staging / MANIFEST).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
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
    return data
