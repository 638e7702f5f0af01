"""Value types shared by the policy kinds: names, durations, percentages, string matches."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
# Each unit bounded by its digits (under 12 days in ms or s, 70 days in m, 42 in h): a
# duration like `99999999999999999999h` is refused, never an overflow in the sidecar.
DURATION_PATTERN = r"^([0-9]{1,9}ms|[0-9]{1,6}s|[0-9]{1,5}m|[0-9]{1,3}h)$"
_DURATION_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}
_DURATION_RE = re.compile(DURATION_PATTERN)


def parse_duration_ms(value: Any) -> int:
    """'250ms' -> 250, '2s' -> 2000. Integer + unit only, as in the policy format."""
    if not isinstance(value, str) or not _DURATION_RE.match(value):
        raise ValueError(f"{value!r} is not a duration like 250ms, 2s, 1m or 1h")
    unit = "ms" if value.endswith("ms") else value[-1]
    return int(value[: -len(unit)]) * _DURATION_UNITS_MS[unit]


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
# `timeout: none`: no route timeout at all (Istio's default for HTTP routes).
NoTimeout = Literal["none"]
Percent = Annotated[float, Field(ge=0, le=100)]

Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", max_length=256)]
# A header value as HTTP allows it (RFC 9110 field-value): no CR, LF, NUL or other control
# character but tab, so a policy cannot split a response or smuggle a header.
HEADER_VALUE_PATTERN = r"^[^\x00-\x08\x0a-\x1f\x7f]*$"
HeaderValue = Annotated[str, Field(pattern=HEADER_VALUE_PATTERN, max_length=8192)]
# What else ends up in a request line or a header (paths, hosts): no control characters at all.
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f]*$"


class Spec(BaseModel):
    """Base of every policy object: camelCase in YAML, snake_case in Python, no unknown fields."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, frozen=True
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        """As in the schema, an optional field is left out, never written as null."""
        if isinstance(data, dict):
            nulls = [key for key, value in data.items() if value is None]
            if nulls:
                raise ValueError(f"{', '.join(map(str, nulls))} may not be null; leave the field out")
        return data


class ExactlyOne(Spec):
    """A choice: exactly one field is set (minProperties/maxProperties 1 in the schema)."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if len(self.model_fields_set) != 1:
            raise ValueError(f"set exactly one of: {', '.join(type(self).model_fields)}")
        return self


class StringMatch(ExactlyOne):
    """Exactly one of exact | prefix | regex | present."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None
    present: bool | None = None


class PathMatch(ExactlyOne):
    """Exactly one of exact | prefix | segmentPrefix | regex.

    `prefix` is a string prefix (Istio's `uri.prefix`: /v2 matches /v2x); `segmentPrefix`
    matches whole path segments (Gateway API PathPrefix: /v2 matches /v2 and /v2/x, not /v2x).
    """

    exact: str | None = None
    prefix: str | None = None
    segment_prefix: Annotated[str, Field(pattern=r"^/")] | None = None
    regex: str | None = None


class ConnectionSettings(Spec):
    """Limits on a listener's client connections (Envoy's HTTP connection manager and listener).

    Unset fields are inherited: a gateway listener's from its Gateway, a Gateway's and a
    Service's sidecar from Mesh.spec.defaults.connections, then the built-in defaults
    (10 s, 300 s and 1,024 connections: meshctl.contract.ConnectionLimits)."""

    # From the first byte of a request's headers to their last (Envoy's request_headers_timeout):
    # a slow-loris client dribbling header bytes is cut here, long before the idle timeout.
    request_headers_timeout: Duration | NoTimeout | None = None
    # No byte either way for this long closes the connection (Envoy's idle_timeout).
    idle_timeout: Duration | None = None
    # Open client connections per listener; one more is closed on accept (Envoy's listener
    # connection limit, counted as downstream_cx_overflow).
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
