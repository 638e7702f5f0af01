"""Retry decisions: what may be retried, when, and how long to wait (pure, clock passed in).

Whether a request may be retried at all (method, body size) is part of the routing decision:
`meshctl.decision.retry_eligibility`.
- `retriable_status(on, status)` / `retriable_error(on, kind)`: the SPEC's `on` conditions.
  Error kinds: "connect-failure", "reset", "timeout" (a per-try timeout).
- `backoff_ms(attempt, backoff, u)`: exponential backoff with full jitter.
- `RetryBudget`: retries in flight at most `percent` of requests in flight, but
  `min_per_second` retries per second and MIN_RETRY_CONCURRENCY at once are always allowed.
- `app_unreached(status, headers)`: a 503 from the destination's sidecar that never reached
  its app counts as a connect failure.
"""

from __future__ import annotations

from meshctl.contract import CompiledBackoff, CompiledRetryBudget

# As Envoy's retry budget `min_retry_concurrency`: this many retries may always be in flight,
# so a burst of connect failures to a dead endpoint is retried elsewhere at any request rate.
MIN_RETRY_CONCURRENCY = 3


def retriable_status(on: tuple[str, ...], status: int) -> bool:
    for cond in on:
        if cond == "5xx" and status >= 500:
            return True
        if cond == "gateway-error" and status in (502, 503, 504):
            return True
        if cond == "retriable-4xx" and status == 409:
            return True
        if cond.isdigit() and int(cond) == status:
            return True
    return False


# Which `on` conditions cover each kind of failure without a response (Envoy's reading:
# `5xx` and `gateway-error` include connect failures, resets and per-try timeouts).
_ERROR_CONDITIONS = {
    "connect-failure": frozenset({"connect-failure", "5xx", "gateway-error", "refused-stream"}),
    "reset": frozenset({"reset", "5xx", "gateway-error"}),
    "timeout": frozenset({"5xx", "gateway-error", "reset"}),
}


def retriable_error(on: tuple[str, ...], kind: str) -> bool:
    conds = _ERROR_CONDITIONS.get(kind, frozenset())
    return any(c in conds for c in on)


def backoff_ms(attempt: int, backoff: CompiledBackoff, u: float) -> float:
    """Delay before retry number `attempt` (1-based): uniform in [0, min(max, base*2^(n-1)))."""
    ceiling = min(float(backoff.max_ms), backoff.base_ms * 2.0 ** max(attempt - 1, 0))
    return u * ceiling


class RetryBudget:
    """Bounds retries relative to traffic, so retries cannot multiply an overload."""

    def __init__(self, spec: CompiledRetryBudget) -> None:
        self.spec = spec
        self.requests_in_flight = 0
        self.retries_in_flight = 0
        self._second = 0
        self._retries_this_second = 0

    def try_acquire(self, now: float) -> bool:
        second = int(now)
        if second != self._second:
            self._second, self._retries_this_second = second, 0
        within_floor = (
            self._retries_this_second < self.spec.min_per_second
            or self.retries_in_flight < MIN_RETRY_CONCURRENCY
        )
        within_percent = (self.retries_in_flight + 1) <= (
            self.spec.percent / 100.0 * max(self.requests_in_flight, 1)
        )
        if not (within_floor or within_percent):
            return False
        self._retries_this_second += 1
        self.retries_in_flight += 1
        return True

    def release(self) -> None:
        self.retries_in_flight = max(0, self.retries_in_flight - 1)


# Flags a mesh sidecar puts on its own 503 when it could not reach its app (or had none).
_UNREACHED_FLAGS = frozenset({"UF", "UH"})


def unreached_flags(flags: str | None) -> bool:
    """Do a sidecar's response flags say its app never saw the request?"""
    return flags is not None and not _UNREACHED_FLAGS.isdisjoint(flags.split(","))


def app_unreached(status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    """A 503 the destination's sidecar made because its app refused the connection: the app
    never saw the request, so it is a connect failure, safe to send to another endpoint."""
    if status != 503:
        return False
    for name, value in headers:
        if name.lower() == b"x-mesh-response-flags":
            return unreached_flags(value.decode("latin-1"))
    return False
