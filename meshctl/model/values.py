"""Value types shared by the policy kinds: names, durations, percentages, string matches."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema
from pydantic.alias_generators import to_camel

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DURATION_PATTERN = r"^[0-9]+(ms|s|m|h)$"
_DURATION_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}
_DURATION_RE = re.compile(DURATION_PATTERN)


def parse_duration_ms(value: Any) -> int:
    """'250ms' -> 250, '2s' -> 2000. Integer + unit only, as in the policy format."""
    if not isinstance(value, str) or not (m := _DURATION_RE.match(value)):
        raise ValueError(f"{value!r} is not a duration like 250ms, 2s, 1m or 1h")
    return int(value[: -len(m.group(1))]) * _DURATION_UNITS_MS[m.group(1)]


def format_duration_ms(ms: int) -> str:
    for unit in ("h", "m", "s"):
        size = _DURATION_UNITS_MS[unit]
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


# Durations are strings in YAML and JSON Schema, integer milliseconds in the model.
Duration = Annotated[
    int,
    PlainValidator(parse_duration_ms),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["250ms", "2s"]}),
]
Percent = Annotated[float, Field(ge=0, le=100)]
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")]


class Spec(BaseModel):
    """Base of every policy object: camelCase in YAML, snake_case in Python, no unknown fields."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class StringMatch(Spec):
    """Exactly one of exact | prefix | regex | present."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None
    present: bool | None = None


class PathMatch(Spec):
    """Exactly one of exact | prefix | regex."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None
