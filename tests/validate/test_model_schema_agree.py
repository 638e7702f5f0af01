"""The typed model and the committed schemas accept exactly the same documents.

Validation trusts the model's verdict on valid documents (the fast path) and asks jsonschema
for messages on invalid ones, so the two must agree. This test mutates every valid document of
the example repositories in many small ways — wrong types, unknown or snake_case keys, removed
fields, emptied lists, several choices at once — and checks both verdicts on each mutation.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from meshctl.model import KINDS
from meshctl.schemas import load_kind_schemas
from meshctl.yamlio import load_documents
from tests.conftest import REPO

SOURCES = [REPO / "mesh.d", REPO / "tests" / "cases" / "compile" / "full" / "mesh.d"]
REPLACEMENTS: list[Any] = ["x", "2s", 7, -1, 150, 1.5, True, None, [], ["GET"], {}, {"exact": "a"}]


def documents() -> list[dict[str, Any]]:
    docs = []
    for source in SOURCES:
        for path in sorted(source.rglob("*.yaml")):
            if "tests" in path.relative_to(source).parts:
                continue
            loaded = load_documents(str(path), path.read_text())
            assert isinstance(loaded, list)
            docs.extend(d.data for d in loaded if isinstance(d.data, dict))
    return docs


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*prefix, i)
            yield from paths(value, (*prefix, i))


def mutations(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for path in paths(doc):
        if path[0] in ("apiVersion", "kind"):
            continue
        parent_path, key = path[:-1], path[-1]
        for replacement in REPLACEMENTS:
            mutated = copy.deepcopy(doc)
            _get(mutated, parent_path)[key] = copy.deepcopy(replacement)
            yield mutated
        mutated = copy.deepcopy(doc)
        del _get(mutated, parent_path)[key]
        yield mutated
        if isinstance(key, str):
            mutated = copy.deepcopy(doc)
            parent = _get(mutated, parent_path)
            snake = "".join("_" + c.lower() if c.isupper() else c for c in key)
            parent[snake if snake != key else key + "_extra"] = parent.pop(key)
            yield mutated
            mutated = copy.deepcopy(doc)
            _get(mutated, parent_path).update({"prefix": "/x", "exact": "/y"})  # two choices at once
            yield mutated


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_model_and_schema_verdicts_agree(doc: dict[str, Any]) -> None:
    validators = {k: jsonschema.Draft202012Validator(s) for k, s in load_kind_schemas().items()}
    model, validator = KINDS[doc["kind"]], validators[doc["kind"]]
    checked = 0
    for mutated in mutations(doc):
        try:
            model.model_validate(mutated, strict=True)
            model_ok = True
        except ValidationError:
            model_ok = False
        schema_ok = validator.is_valid(mutated)
        assert model_ok == schema_ok, f"model says {model_ok}, schema says {schema_ok}: {mutated}"
        checked += 1
    assert checked > 10
