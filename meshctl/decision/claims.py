"""Verified JWT claims as route conditions (`match.claims`), a pure function of the claims."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def claim_value(claims: Mapping[str, Any], name: str) -> str | list[str] | None:
    """A claim by name; "a.b" reaches nested objects. Lists stay lists (any element may match),
    other scalars become text; objects are not matchable (None)."""
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, list):
        return [_text(v) for v in value if not isinstance(v, (dict, list))]
    if isinstance(value, Mapping):
        return None
    return _text(value)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
