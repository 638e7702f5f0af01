"""The JSON Schemas in `schemas/`, generated from the typed model and committed.

The committed files are the source of truth for what documents may hold (editors and
`meshctl validate` use them); a test regenerates them and fails when the model and the files
disagree, so the two never drift. The compiled output has schemas too, generated from the
contract: the deployment manifest, the sidecar config and the runtime bindings (the interface
CI tools can check a compiled directory against, docs/compiled-output.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from meshctl import contract
from meshctl.model import KINDS

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE = "https://meshctl.dev/schemas/v1alpha1/"
SIDECAR_SCHEMA_FILE = "sidecar-config.schema.json"
MANIFEST_SCHEMA_FILE = "manifest.schema.json"
BINDINGS_SCHEMA_FILE = "runtime-bindings.schema.json"
# what a compiled directory holds (and a runtime writes beside each config): CI tools check these;
# the names `meshctl schema` knows them by
COMPILED_SCHEMAS = {"manifest": MANIFEST_SCHEMA_FILE, "sidecar": SIDECAR_SCHEMA_FILE, "bindings": BINDINGS_SCHEMA_FILE}


def schema_file(kind: str) -> str:
    return f"{kind.lower()}.schema.json"


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null" and len(schema) == 1


def _clean(node: Any, *, keep_null: bool = False) -> Any:
    """Drop pydantic noise: titles, and (for policy kinds, where users omit optional fields
    rather than write null) the `null` alternatives of optional fields."""
    if isinstance(node, list):
        return [_clean(item, keep_null=keep_null) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _clean(v, keep_null=keep_null) for k, v in node.items() if k != "title" or not isinstance(v, str)}
    options = out.get("anyOf")
    if keep_null:
        return out
    if isinstance(options, list) and any(_is_null(o) for o in options) and out.get("default", 0) is None:
        rest = [o for o in options if not _is_null(o)]
        del out["anyOf"], out["default"]
        if len(rest) == 1:
            out = {**rest[0], **out}
        else:
            out["anyOf"] = rest
    return out


def _document(model: type[BaseModel], schema_id: str, title: str, *, keep_null: bool = False) -> dict[str, Any]:
    generated = _clean(model.model_json_schema(by_alias=True), keep_null=keep_null)
    return {"$schema": SCHEMA_DIALECT, "$id": schema_id, "title": title, **generated}


def kind_schemas() -> dict[str, dict[str, Any]]:
    """One schema per policy kind, keyed by kind."""
    return {
        kind: _document(model, SCHEMA_BASE + schema_file(kind), f"meshctl {kind}")
        for kind, model in KINDS.items()
    }


def _pinned(schema: dict[str, Any], field: str, values: list[str]) -> dict[str, Any]:
    """A version field is a free string in the model (checked by the parser, with its own
    message); the schema names the versions this meshctl reads."""
    schema["properties"][field]["enum"] = values
    return schema


def sidecar_schema() -> dict[str, Any]:
    schema = _document(
        contract.SidecarConfig,
        SCHEMA_BASE + SIDECAR_SCHEMA_FILE,
        f"meshctl compiled sidecar config ({contract.SCHEMA_VERSION})",
        keep_null=True,  # compiled configs spell every field out, null included
    )
    return _pinned(schema, "schema_version", sorted(contract.SUPPORTED_SCHEMA_VERSIONS))


def manifest_schema() -> dict[str, Any]:
    schema = _document(
        contract.DeploymentManifest,
        SCHEMA_BASE + MANIFEST_SCHEMA_FILE,
        f"meshctl deployment manifest ({contract.MANIFEST_VERSION})",
        keep_null=True,
    )
    _pinned(schema, "manifest_version", [contract.MANIFEST_VERSION])
    return _pinned(schema, "schema_version", sorted(contract.SUPPORTED_SCHEMA_VERSIONS))


def bindings_schema() -> dict[str, Any]:
    return _document(
        contract.RuntimeBindings,
        SCHEMA_BASE + BINDINGS_SCHEMA_FILE,
        "meshctl runtime bindings (what a runtime writes beside each sidecar config)",
        keep_null=True,
    )


def all_schema_files() -> dict[str, str]:
    """File name -> canonical text, exactly as committed in `schemas/`."""
    files = {schema_file(kind): schema for kind, schema in kind_schemas().items()}
    files[SIDECAR_SCHEMA_FILE] = sidecar_schema()
    files[MANIFEST_SCHEMA_FILE] = manifest_schema()
    files[BINDINGS_SCHEMA_FILE] = bindings_schema()
    return {name: json.dumps(schema, indent=2, sort_keys=True) + "\n" for name, schema in files.items()}


def repository_schema_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "schemas"


def load_kind_schemas() -> dict[str, dict[str, Any]]:
    """The committed schemas when present (source of truth), else freshly generated ones."""
    directory = repository_schema_dir()
    result: dict[str, dict[str, Any]] = {}
    generated = None
    for kind in KINDS:
        path = directory / schema_file(kind)
        if path.is_file():
            result[kind] = json.loads(path.read_text(encoding="utf-8"))
        else:
            generated = generated or kind_schemas()
            result[kind] = generated[kind]
    return result
