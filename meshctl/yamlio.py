"""YAML loading that keeps file:line:column for every node.

A parser composes the node graph (with marks): libyaml's C parser through PyYAML when installed,
else ruamel.yaml (pure Python; a test checks both give the same documents and positions). We
build plain JSON-like data from the nodes ourselves, so every value and every mapping key has a
recorded position, duplicate keys are found with both positions, and scalars follow YAML 1.2
(`yes`/`no` and timestamps stay strings: JSON Schema sees what the user wrote). Parse errors are
values, not exceptions: `load_documents` returns `YamlError` for a file that does not parse.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

try:  # libyaml's C parser (through PyYAML) composes ~14x faster than pure-Python ruamel
    import yaml as _pyyaml
    from yaml import CSafeLoader as _CLoader  # type: ignore[attr-defined]
    from yaml import MarkedYAMLError as _LibyamlMarkedError
    from yaml import YAMLError as _LibyamlError
except ImportError:  # pragma: no cover - PyYAML without libyaml: ruamel does the same job
    _pyyaml = None  # type: ignore[assignment]
    _LibyamlMarkedError = MarkedYAMLError  # type: ignore[misc,assignment]
    _LibyamlError = YAMLError  # type: ignore[misc,assignment]

Path = tuple[str | int, ...]


class Position(NamedTuple):  # a tuple: cheap to make for every node of a large repository
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class Document:
    """One YAML document: its data and where each part of it stands in the file."""

    file: str
    index: int  # 0-based document number in the file
    data: Any
    start: Position
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)  # (line, column) as Position
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    duplicate_keys: list[tuple[Path, Position, Position]] = field(default_factory=list)

    def position(self, path: Path, *, key: bool = False) -> Position:
        """Position of the node at `path`, or of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                return Position(*table[probe])
            if key and probe in self.values:
                return Position(*self.values[probe])
            probe = probe[:-1]
        return Position(*self.values.get((), self.start))


@dataclass(frozen=True)
class YamlError:
    file: str
    position: Position
    message: str


# YAML 1.2 core schema for plain scalars, resolved here so both parsers agree (no "Norway
# problem": `yes`, `no`, `on`, `off` stay strings) and timestamps stay strings.
_NULL_RE = re.compile(r"^(~|null|Null|NULL|)$")
_BOOL_RE = re.compile(r"^(true|True|TRUE|false|False|FALSE)$")
_INT_RE = re.compile(r"^[-+]?[0-9]+$|^0o[0-7]+$|^0x[0-9a-fA-F]+$")
_FLOAT_RE = re.compile(
    r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$"
)


def _mark(node: Any) -> tuple[int, int]:
    """(line, column), 1-based. Plain tuples: a Position per node costs too much on large repos."""
    mark = node.start_mark
    return (mark.line + 1, mark.column + 1)


# A plain scalar starting with any other character can only be a string.
_MAYBE_NOT_STRING = frozenset("0123456789+-.~nNtTfF")


def _scalar(node: Any) -> Any:
    value: str = node.value
    if node.style or (value and value[0] not in _MAYBE_NOT_STRING):
        return value  # quoted or block scalars are strings ("" or None style is plain)
    if _NULL_RE.match(value):
        return None
    if _BOOL_RE.match(value):
        return value.lower() == "true"
    if _INT_RE.match(value):
        if value.startswith("0o"):
            return int(value[2:], 8)
        if value.startswith("0x"):
            return int(value[2:], 16)
        return int(value)
    if _FLOAT_RE.match(value):
        lowered = value.lower()
        if lowered.endswith("inf"):
            return -math.inf if lowered.startswith("-") else math.inf
        if lowered.endswith("nan"):
            return math.nan
        return float(value)
    return value


if _pyyaml is not None:

    class _PlainLoader(_CLoader):  # type: ignore[misc,valid-type]
        """Skips implicit tag resolution: `_scalar` applies YAML 1.2 rules itself."""

        def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
            return ""


def _compose_all(text: str, *, parser: str = "auto") -> list[Any]:
    """Node graphs (with marks) of every document; `parser` "ruamel" forces the pure-Python one."""
    if parser != "ruamel" and _pyyaml is not None:
        return list(_pyyaml.compose_all(text, Loader=_PlainLoader))
    return list(YAML(typ="safe", pure=True).compose_all(text))


class _Builder:
    def __init__(self, doc: Document) -> None:
        self.doc = doc

    def build(self, node: Any, path: Path) -> Any:
        self.doc.values[path] = _mark(node)
        if node.id == "scalar":
            return _scalar(node)
        if node.id == "sequence":
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if node.id == "mapping":
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = _scalar(key_node) if key_node.id == "scalar" else str(key_node.value)
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
                    self.doc.duplicate_keys.append((child, Position(*first), Position(*_mark(key_node))))
                self.doc.keys[child] = _mark(key_node)
                result[key] = self.build(value_node, child)
            return result
        return None


def load_documents(file: str, text: str, *, parser: str = "auto") -> list[Document] | YamlError:
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
        nodes = _compose_all(text, parser=parser)
    except (MarkedYAMLError, _LibyamlMarkedError) as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(mark.line + 1, mark.column + 1) if mark else Position(1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        opened = exc.context_mark
        if opened is not None and mark is not None and opened.line != mark.line:
            context += f", opened at line {opened.line + 1} column {opened.column + 1}"
        return YamlError(file, pos, f"YAML syntax error: {problem}{context}")
    except (YAMLError, _LibyamlError) as exc:
        return YamlError(file, Position(1, 1), f"YAML error: {exc}")
    docs = []
    for index, node in enumerate(nodes):
        if node is None:
            continue
        doc = Document(file=file, index=index, data=None, start=Position(*_mark(node)))
        doc.data = _Builder(doc).build(node, ())
        docs.append(doc)
    return docs
