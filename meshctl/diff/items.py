"""Change items and the generic comparison of compiled values, shared by the diff modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from meshctl.diff import words

ChangeKind = Literal["added", "removed", "modified"]


@dataclass(frozen=True)
class Change:
    sidecar: str  # "reviews", "gateway/public"
    path: str  # where in the compiled config, e.g. "route.rules[default].backends"
    change: ChangeKind
    old: Any  # JSON value before (None when added)
    new: Any  # JSON value after (None when removed)
    summary: str  # the change in a reviewer's words, without the sidecar name
    affects: tuple[str, ...] = field(default=())  # sidecars whose config carries this change

    def sort_key(self) -> tuple[str, str, str]:
        return (self.sidecar, self.path, self.change)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sidecar": self.sidecar,
            "path": self.path,
            "change": self.change,
            "old": self.old,
            "new": self.new,
            "summary": self.summary,
            "affects": list(self.affects),
        }


@dataclass(frozen=True)
class Item:
    """A change relative to one part of a config; the sidecar is attached by the caller."""

    path: str
    change: ChangeKind
    old: Any
    new: Any
    summary: str


def to_json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


# --- generic leaf comparison ----------------------------------------------------------------


def _flatten(value: Any, prefix: tuple[str, ...], out: dict[tuple[str, ...], Any]) -> None:
    if isinstance(value, dict) and value:
        for key, child in value.items():
            _flatten(child, (*prefix, str(key)), out)
    elif _named(value):  # gateway listeners, JWT providers, ...: compared by name, leaf by leaf
        for child in value:
            _flatten(child, (*prefix, str(child["name"])), out)
    else:
        out[prefix] = value


def _named(value: Any) -> bool:
    """A list of objects each with its own `name`."""
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        return False
    names = [v.get("name") for v in value]
    return None not in names and len(set(names)) == len(names)


def _is_models(value: Any) -> bool:
    return isinstance(value, BaseModel) or (
        isinstance(value, tuple | list) and bool(value) and isinstance(value[0], BaseModel))


def leaf_changes(old: Any, new: Any) -> list[str]:
    """["attempts 2 -> 3", "perTryTimeout none -> 500ms"]: every changed leaf, in words."""
    before: dict[tuple[str, ...], Any] = {}
    after: dict[tuple[str, ...], Any] = {}
    _flatten(to_json(old), (), before)
    _flatten(to_json(new), (), after)
    phrases = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        last = key[-1] if key else ""
        label = ".".join(words.field_name(k) for k in key)
        phrase = f"{words.scalar(last, a)} -> {words.scalar(last, b)}"
        phrases.append(f"{label} {phrase}" if label else phrase)
    return phrases


def modified(path: str, old: Any, new: Any, summary: str) -> Item:
    return Item(path, "modified", to_json(old), to_json(new), summary)


def policy_phrases(a: Any, b: Any) -> list[str]:
    if a is None:
        return ["added: " + ", ".join(leaf_changes(None, b)).replace("none -> ", "")]
    if b is None:
        return ["removed"]
    return leaf_changes(a, b)


def other_fields(old: BaseModel, new: BaseModel, handled: frozenset[str], base: str, label: str = "") -> list[Item]:
    """Fields the diff has no special words for (new ones, as the contract grows), compared
    leaf by leaf: no change to a compiled config goes unreported."""
    items = []
    for name in type(new).model_fields:
        if name in handled:
            continue
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            if _is_models(a) or _is_models(b):
                phrase = ", ".join(leaf_changes(a, b))
            else:  # a scalar or list: its own name says how to print it (durations for *_ms)
                phrase = f"{words.scalar(name, a)} -> {words.scalar(name, b)}"
            summary = f"{label}{words.field_name(name)} {phrase}"
            items.append(modified(f"{base}{name}", a, b, summary))
    return items
