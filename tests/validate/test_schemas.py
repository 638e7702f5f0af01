"""The committed JSON Schemas and the typed model stay in step; the schemas are valid 2020-12."""

from __future__ import annotations

import json

import jsonschema
import pytest

from meshctl.model import KINDS
from meshctl.schemas import all_schema_files, repository_schema_dir

GENERATED = all_schema_files()


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_committed_schema_matches_the_model(name: str) -> None:
    committed = repository_schema_dir() / name
    assert committed.is_file(), f"schemas/{name} is missing: run `meshctl schema --out schemas`"
    assert committed.read_text() == GENERATED[name], (
        f"schemas/{name} differs from the model: run `meshctl schema --out schemas` and commit"
    )


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_schema_is_valid_draft_2020_12_with_stable_id(name: str) -> None:
    schema = json.loads(GENERATED[name])
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("/" + name)
    jsonschema.Draft202012Validator.check_schema(schema)


def test_every_model_field_is_in_the_schema() -> None:
    """Walk each kind's model; every field (by its YAML name) must appear in its schema."""
    for kind, model in KINDS.items():
        schema = json.loads(GENERATED[f"{kind.lower()}.schema.json"])
        defs = {**schema.get("$defs", {}), kind: schema}
        for name, sub in defs.items():
            props = sub.get("properties", {})
            cls = _find_model(model, name)
            if cls is None:
                continue
            for field_name, info in cls.model_fields.items():
                assert (info.alias or field_name) in props, f"{kind}: {name}.{field_name} missing"


def _find_model(root: type, name: str) -> type | None:
    seen: set[type] = set()
    stack = [root]
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        if cls.__name__ == name or (cls is root and name in KINDS):
            return cls
        for info in getattr(cls, "model_fields", {}).values():
            stack.extend(_models_in(info.annotation))
    return None


def _models_in(annotation: object) -> list[type]:
    from typing import get_args

    found: list[type] = []
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        found.append(annotation)
    for arg in get_args(annotation):
        found.extend(_models_in(arg))
    return found


def test_schema_prints_a_kind_or_a_compiled_file_and_names_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    from meshctl.cli.main import main

    for kind, file in (("gateway", "gateway.schema.json"), ("Manifest", "manifest.schema.json"),
                       ("bindings", "runtime-bindings.schema.json")):
        assert main(["schema", kind]) == 0
        assert capsys.readouterr().out == all_schema_files()[file]
    assert main(["schema", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert "unknown kind 'nonsense'" in err and "AccessPolicy" in err and "manifest, sidecar, bindings" in err
