"""gRPC over HTTP/2 as a proxy sees it (pure: no mitmproxy, no I/O).

- Status codes and Istio's retry conditions (`cancelled`, `deadline-exceeded`, `internal`,
  `resource-exhausted`, `unavailable`).
- `grpc-timeout` parsing and formatting (gRPC's PROTOCOL-HTTP2: 1-8 digits and a unit).
- The gRPC status for an answer the sidecar makes itself (gRPC's own HTTP-to-gRPC mapping,
  DEADLINE_EXCEEDED for a timeout), and `grpc-message` percent-encoding.
"""

from __future__ import annotations

import math
import re
from urllib.parse import quote, unquote

CONTENT_TYPE = "application/grpc"

OK = 0
CANCELLED = 1
UNKNOWN = 2
DEADLINE_EXCEEDED = 4
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16

CODES = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
    "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}

# Istio's `retryOn` gRPC conditions (Envoy's x-envoy-retry-grpc-on).
RETRY_CONDITIONS = {
    "cancelled": CANCELLED,
    "deadline-exceeded": DEADLINE_EXCEEDED,
    "internal": INTERNAL,
    "resource-exhausted": RESOURCE_EXHAUSTED,
    "unavailable": UNAVAILABLE,
}

_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_UNIT_SECONDS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_timeout(value: str | None) -> float | None:
    """`grpc-timeout` in seconds; None when absent or malformed (then it is ignored)."""
    if not value:
        return None
    found = _TIMEOUT.match(value.strip())
    if found is None:
        return None
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2)]


def format_timeout(seconds: float) -> str:
    """The shortest exact-enough `grpc-timeout`: milliseconds, rounded up, at least 1m."""
    ms = max(1, math.ceil(seconds * 1000))
    if ms < 10**8:
        return f"{ms}m"
    return f"{min(math.ceil(seconds), 10**8 - 1)}S"


def deadline_s(route_timeout_ms: int | None, grpc_timeout: str | None) -> float | None:
    """The call's time budget: the caller's `grpc-timeout`, capped by the route timeout."""
    asked = parse_timeout(grpc_timeout)
    route = route_timeout_ms / 1000.0 if route_timeout_ms else None
    if asked is None:
        return route
    return asked if route is None else min(asked, route)


def retriable(on: tuple[str, ...], status: int) -> bool:
    return any(RETRY_CONDITIONS.get(cond) == status for cond in on)


def parse_status(value: str | bytes | None) -> int | None:
    if value is None:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    return int(text) if text.strip().isdigit() else None


def status_for_http(status: int, flags: list[str] | tuple[str, ...] = ()) -> int:
    """The gRPC status of a sidecar answer with this HTTP status and these flags."""
    if "UT" in flags or status == 504:
        return DEADLINE_EXCEEDED
    if status in (401,):
        return UNAUTHENTICATED
    if status == 403:
        return PERMISSION_DENIED
    if status == 404:
        return UNIMPLEMENTED
    if status in (429, 502, 503):
        return UNAVAILABLE
    if status == 400:
        return INTERNAL
    return UNKNOWN if status >= 300 else OK


def encode_message(message: str) -> str:
    """`grpc-message` is percent-encoded UTF-8 (printable ASCII except % kept)."""
    return quote(message, safe=" !\"#$&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              "[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~")


def decode_message(value: str) -> str:
    return unquote(value)


def is_retry_condition(cond: str) -> bool:
    return cond in RETRY_CONDITIONS
