"""YAML loading that keeps file:line:column for every node.

A parser composes the node graph (with marks): libyaml's C parser through PyYAML when installed,
else ruamel.yaml (pure Python; a test checks both give the same documents and positions). We
build plain JSON-like data from the nodes ourselves, so every value and every mapping key has a
recorded position, duplicate keys are found with both positions, and scalars follow YAML 1.2
(`yes`/`no` and timestamps stay strings: JSON Schema sees what the user wrote). Parse errors are
values, not exceptions: `load_documents` returns `YamlError` for a file that does not parse.

Hostile input is bounded before it can cost time or memory: file size, documents per file,
nesting depth, nodes built per file (aliases count every time they are expanded, so a "billion
laughs" stops after `MAX_NODES`), a self-referencing alias, and integer literals past
`MAX_INT_DIGITS`. Each limit is a `YamlError` at the node where it was reached.
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

# Limits for one policy file. Real policy files are a few KiB; these are far above any of them
# and far below what would hang a command (Kubernetes caps one object near 1.5 MiB).
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_DOCUMENTS = 1_000
MAX_NODES = 50_000  # scalars, sequences and mappings built, alias expansions included
MAX_DEPTH = 64
MAX_INT_DIGITS = 30  # far past any port, count or percentage; Python refuses int() past 4,300


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


class _LimitReached(Exception):
    def __init__(self, node: Any, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


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
        if len(value) > MAX_INT_DIGITS:
            raise _LimitReached(node, f"integer literal of {len(value)} characters; the limit is {MAX_INT_DIGITS}")
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


# Below this size a file cannot hold MAX_NODES nodes (each takes at least two characters) nor
# MAX_DOCUMENTS documents, so only larger files pay for counting events before composing.
_PRECHECK_OVER = 64 * 1024


def _count_events(text: str, parser: str) -> None:
    """Stop a file with too many nodes or documents while parsing, before it is composed."""
    if parser != "ruamel" and _pyyaml is not None:
        events = _pyyaml.parse(text, Loader=_PlainLoader)
    else:
        events = YAML(typ="safe", pure=True).parse(text)
    nodes = documents = 0
    for event in events:
        name = type(event).__name__
        if name in ("ScalarEvent", "SequenceStartEvent", "MappingStartEvent"):
            nodes += 1
            if nodes > MAX_NODES:
                raise _LimitReached(event, f"more than {MAX_NODES} nodes in one file")
        elif name == "DocumentStartEvent":
            documents += 1
            if documents > MAX_DOCUMENTS:
                raise _TooManyDocuments(Position(*_mark(event)))


def _compose_all(text: str, *, parser: str = "auto") -> list[Any]:
    """Node graphs (with marks) of every document; `parser` "ruamel" forces the pure-Python one."""
    if len(text) > _PRECHECK_OVER:
        _count_events(text, parser)
    if parser != "ruamel" and _pyyaml is not None:
        stream = _pyyaml.compose_all(text, Loader=_PlainLoader)
    else:
        stream = YAML(typ="safe", pure=True).compose_all(text)
    nodes: list[Any] = []
    for node in stream:  # counted as they come: a million empty documents stop at the limit
        nodes.append(node)
        if len(nodes) > MAX_DOCUMENTS:
            raise _TooManyDocuments(Position(*_mark(node)) if node is not None else Position(1, 1))
    return nodes


class _Builder:
    """Plain data from a node graph, within the node budget of the whole file."""

    def __init__(self, doc: Document, budget: list[int]) -> None:
        self.doc = doc
        self.budget = budget  # nodes still allowed in this file (shared by its documents)
        self.open: set[int] = set()  # collection nodes being built: an alias to one is a cycle

    def build(self, node: Any, path: Path) -> Any:
        self.budget[0] -= 1
        if self.budget[0] < 0:
            raise _LimitReached(node, f"more than {MAX_NODES} nodes in one file (aliases count each time "
                                      "they are used)")
        if len(path) > MAX_DEPTH:
            raise _LimitReached(node, f"nested more than {MAX_DEPTH} levels deep")
        self.doc.values[path] = _mark(node)
        if node.id == "scalar":
            return _scalar(node)
        if id(node) in self.open:
            raise _LimitReached(node, "an alias refers to a node that contains it (a cycle)")
        self.open.add(id(node))
        try:
            if node.id == "sequence":
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            if node.id == "mapping":
                return self._mapping(node, path)
        finally:
            self.open.discard(id(node))
        return None

    def _mapping(self, node: Any, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged_keys: set[str] = set()  # keys that came from `<<`: the mapping's own keys win
        for key_node, value_node in node.value:
            if key_node.id == "scalar":
                key = _scalar(key_node)
            else:
                raise _LimitReached(key_node, f"a {key_node.id} as a mapping key; keys must be plain strings")
            key = str(key) if not isinstance(key, str) else key
            if key == "<<":  # merge key: fold the referenced mapping(s) in, own keys win
                merged = self.build(value_node, (*path, key))
                for item in merged if isinstance(merged, list) else [merged]:
                    if isinstance(item, dict):
                        for k, v in item.items():
                            if k not in result:
                                result[k] = v
                                merged_keys.add(k)
                continue
            child = (*path, key)
            if key in result and key not in merged_keys:
                first = self.doc.keys[child]
                self.doc.duplicate_keys.append((child, Position(*first), Position(*_mark(key_node))))
            merged_keys.discard(key)
            self.doc.keys[child] = _mark(key_node)
            result[key] = self.build(value_node, child)
        return result


def load_documents(file: str, text: str, *, parser: str = "auto") -> list[Document] | YamlError:
    """Parse every document of one file; a syntax error yields a YamlError with its position."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        return YamlError(file, Position(1, 1), f"file is {size} bytes; the limit is {MAX_FILE_BYTES}")
    if (too_deep := _too_deep(text)) is not None:
        return YamlError(file, too_deep, f"nested more than {MAX_DEPTH} levels deep")
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
        first_line = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        return YamlError(file, _reader_position(text, exc), f"YAML error: {first_line}")
    except _TooManyDocuments as exc:
        return YamlError(file, exc.position, f"more than {MAX_DOCUMENTS} documents in one file")
    except _LimitReached as exc:
        return YamlError(file, Position(*_mark(exc.node)), exc.message)
    except RecursionError:  # nesting the depth pre-check could not see (e.g. inside a flow scalar)
        return YamlError(file, Position(1, 1), f"nested more than {MAX_DEPTH} levels deep")
    docs = []
    budget = [MAX_NODES]
    try:
        for index, node in enumerate(nodes):
            if node is None:
                continue
            doc = Document(file=file, index=index, data=None, start=Position(*_mark(node)))
            doc.data = _Builder(doc, budget).build(node, ())
            docs.append(doc)
    except _LimitReached as exc:
        return YamlError(file, Position(*_mark(exc.node)), exc.message)
    return docs


def _reader_position(text: str, exc: Exception) -> Position:
    """Line and column of a reader error (a character YAML forbids), which carries an offset."""
    offset = getattr(exc, "position", None)
    if not isinstance(offset, int) or not 0 <= offset <= len(text):
        return Position(1, 1)
    before = text[:offset]
    line = before.count("\n") + 1
    return Position(line, offset - (before.rfind("\n") + 1) + 1)


class _TooManyDocuments(Exception):
    def __init__(self, position: Position) -> None:
        self.position = position


def _too_deep(text: str) -> Position | None:
    """Where flow collections (`[`, `{`) nest past MAX_DEPTH, before a parser recurses into them.

    Brackets inside quotes or comments may count too; that only errs on a file already far
    past any real policy's nesting.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return None
    depth = 0
    line, column = 1, 0
    for char in text:
        column += 1
        if char == "\n":
            line, column = line + 1, 0
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return Position(line, column)
        elif char in "]}":
            depth = max(0, depth - 1)
    return None
