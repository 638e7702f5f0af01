"""YAML loading that keeps file:line:column for every node.

ruamel composes the node graph (with marks); we build plain JSON-like data from it ourselves, so
every value and every mapping key has a recorded position, duplicate keys are found with both
positions, and timestamps stay strings (JSON Schema sees what the user wrote). Parse errors are
values, not exceptions: `load_documents` returns `YamlError` for a file that does not parse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class Document:
    """One YAML document: its data and where each part of it stands in the file."""

    file: str
    index: int  # 0-based document number in the file
    data: Any
    start: Position
    values: dict[Path, Position] = field(default_factory=dict)
    keys: dict[Path, Position] = field(default_factory=dict)
    duplicate_keys: list[tuple[Path, Position, Position]] = field(default_factory=list)

    def position(self, path: Path, *, key: bool = False) -> Position:
        """Position of the node at `path`, or of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if key and probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), self.start)


@dataclass(frozen=True)
class YamlError:
    file: str
    position: Position
    message: str


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = True  # found and reported by us, with both positions
    return yaml


_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"


def _mark(node: Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def _scalar(node: ScalarNode) -> Any:
    value: str = node.value
    tag = node.tag.value if hasattr(node.tag, "value") else str(node.tag)
    if tag == _NULL_TAG:
        return None
    if tag == _BOOL_TAG:
        return value.lower() in ("true", "yes", "on")
    if tag == _INT_TAG:
        text = value.replace("_", "")
        try:
            if text.lower().startswith(("0x", "-0x", "+0x")):
                return int(text, 16)
            if text.lower().startswith(("0o", "-0o", "+0o")):
                return int(text, 8)
            return int(text)
        except ValueError:
            return value
    if tag == _FLOAT_TAG:
        text = value.replace("_", "").lower()
        if text in (".inf", "+.inf"):
            return math.inf
        if text == "-.inf":
            return -math.inf
        if text == ".nan":
            return math.nan
        try:
            return float(text)
        except ValueError:
            return value
    return value


class _Builder:
    def __init__(self, doc: Document) -> None:
        self.doc = doc

    def build(self, node: Node, path: Path) -> Any:
        self.doc.values[path] = _mark(node)
        if isinstance(node, ScalarNode):
            return _scalar(node)
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = _scalar(key_node) if isinstance(key_node, ScalarNode) else str(key_node)
                key = str(key) if not isinstance(key, str) else key
                if key == "<<":  # merge key: fold the referenced mapping(s) in, own keys win
                    merged = self.build(value_node, (*path, key))
                    for item in merged if isinstance(merged, list) else [merged]:
                        if isinstance(item, dict):
                            for k, v in item.items():
                                result.setdefault(k, v)
                    continue
                child = (*path, key)
                if key in result:
                    first = self.doc.keys[child]
                    self.doc.duplicate_keys.append((child, first, _mark(key_node)))
                self.doc.keys[child] = _mark(key_node)
                result[key] = self.build(value_node, child)
            return result
        return None


def load_documents(file: str, text: str) -> list[Document] | YamlError:
    """Parse every document of one file; a syntax error yields a YamlError with its position."""
    if "\t" in text:
        # YAML forbids tabs in indentation; ruamel's message for it is obscure, so say it plainly.
        for lineno, line in enumerate(text.splitlines(), start=1):
            stripped = line.lstrip(" ")
            if stripped.startswith("\t"):
                col = len(line) - len(stripped) + 1
                return YamlError(
                    file, Position(lineno, col), "tab character used for indentation; use spaces"
                )
    try:
        nodes = list(_yaml().compose_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(mark.line + 1, mark.column + 1) if mark else Position(1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        opened = exc.context_mark
        if opened is not None and mark is not None and opened.line != mark.line:
            context += f", opened at line {opened.line + 1} column {opened.column + 1}"
        return YamlError(file, pos, f"YAML syntax error: {problem}{context}")
    except YAMLError as exc:
        return YamlError(file, Position(1, 1), f"YAML error: {exc}")
    docs = []
    for index, node in enumerate(nodes):
        if node is None:
            continue
        doc = Document(file=file, index=index, data=None, start=_mark(node))
        doc.data = _Builder(doc).build(node, ())
        docs.append(doc)
    return docs
