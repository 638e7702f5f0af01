"""Both YAML parsers give the same documents and positions; YAML 1.2 scalars; errors are values."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshctl.yamlio import Document, Position, YamlError, load_documents
from tests.conftest import REPO

SAMPLES = sorted((REPO / "tests" / "cases").rglob("*.yaml")) + sorted((REPO / "mesh.d").rglob("*.yaml"))


def _view(docs: list[Document] | YamlError) -> object:
    if isinstance(docs, YamlError):
        return ("error", docs.position)
    return [(d.data, d.values, d.keys, d.duplicate_keys) for d in docs]


@pytest.mark.parametrize("path", SAMPLES, ids=[str(p.relative_to(REPO)) for p in SAMPLES])
def test_libyaml_and_ruamel_agree(path: Path) -> None:
    text = path.read_text(encoding="utf-8", errors="replace")
    assert _view(load_documents(str(path), text)) == _view(load_documents(str(path), text, parser="ruamel"))


def test_yaml_1_2_scalars() -> None:
    docs = load_documents("f.yaml", "a: yes\nb: on\nc: true\nd: 010\ne: 1.5\nf: 2026-01-01\ng: ~\nh: '3'\n")
    assert isinstance(docs, list)
    assert docs[0].data == {"a": "yes", "b": "on", "c": True, "d": 10, "e": 1.5, "f": "2026-01-01",
                            "g": None, "h": "3"}


def test_positions_of_values_keys_and_duplicates() -> None:
    docs = load_documents("f.yaml", "spec:\n  rules:\n    - name: a\n      name: b\n")
    assert isinstance(docs, list)
    doc = docs[0]
    assert doc.values[("spec", "rules", 0)] == Position(3, 7)
    assert doc.keys[("spec", "rules", 0, "name")] == Position(4, 7)
    assert doc.duplicate_keys == [(("spec", "rules", 0, "name"), Position(3, 7), Position(4, 7))]
    assert doc.position(("spec", "rules", 0, "missing", "deeper")) == Position(3, 7)


@pytest.mark.parametrize("text,line", [("a: [1\nb: 2\n", 2), ("a:\n\tb: 1\n", 2), ("a: b: c\n", 1)])
def test_syntax_errors_are_values_with_positions(text: str, line: int) -> None:
    result = load_documents("f.yaml", text)
    assert isinstance(result, YamlError) and result.position.line == line
