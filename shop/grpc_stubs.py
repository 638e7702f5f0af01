"""Generated gRPC code for the shop's protos, built from `shop/proto/*.proto` on demand.

The generated modules are not kept in git: `scripts/setup` builds them, and `load()` rebuilds
them when a proto is newer than its output (or the output is missing), so a fresh clone and an
edited proto both work. Output goes to `shop/_generated/` (git-ignored), written to a temporary
directory and renamed into place, so two processes generating at once never see half a file.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

PROTO_DIR = Path(__file__).resolve().parent / "proto"
OUT_DIR = Path(__file__).resolve().parent / "_generated"


class StubError(Exception):
    """protoc refused a proto (the message names the file)."""


def _stale(proto: Path) -> bool:
    outputs = [OUT_DIR / f"{proto.stem}_pb2.py", OUT_DIR / f"{proto.stem}_pb2_grpc.py"]
    return any(not out.exists() or out.stat().st_mtime < proto.stat().st_mtime for out in outputs)


def generate(force: bool = False) -> Path:
    """Build every proto's modules into OUT_DIR; returns OUT_DIR."""
    protos = sorted(PROTO_DIR.glob("*.proto"))
    if not force and not any(_stale(p) for p in protos):
        return OUT_DIR
    from grpc_tools import protoc  # only needed when building

    OUT_DIR.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="._generated-", dir=OUT_DIR.parent))
    try:
        include = Path(protoc.__file__).parent / "_proto"
        for proto in protos:
            code = protoc.main([
                "grpc_tools.protoc", f"-I{PROTO_DIR}", f"-I{include}",
                f"--python_out={tmp}", f"--grpc_python_out={tmp}", str(proto),
            ])
            if code != 0:
                raise StubError(f"{proto}: protoc failed (exit {code})")
        (tmp / "__init__.py").write_text("")
        for item in tmp.iterdir():  # one rename per file: readers see old or new, never half
            OUT_DIR.mkdir(exist_ok=True)
            os.replace(item, OUT_DIR / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return OUT_DIR


def load(name: str) -> tuple[ModuleType, ModuleType]:
    """(`<name>_pb2`, `<name>_pb2_grpc`) for `shop/proto/<name>.proto`."""
    out = str(generate())
    if out not in sys.path:
        sys.path.insert(0, out)  # the generated _grpc module imports its _pb2 by bare name
    return importlib.import_module(f"{name}_pb2"), importlib.import_module(f"{name}_pb2_grpc")


if __name__ == "__main__":
    print(generate(force="--force" in sys.argv))
