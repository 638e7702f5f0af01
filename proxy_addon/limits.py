"""Admission limits: a destination's connection pool (circuit breaker), the inbound rate limit,
and what a request's headers may hold at all."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from meshctl.contract import CompiledConnectionPool, CompiledRateLimit

# Control bytes other than tab: HTTP forbids them in a field (RFC 9110 5.5); passing one on
# would crash the upstream client or split a header.
_FORBIDDEN_IN_FIELDS = frozenset(range(0x20)) - {0x09} | {0x7F}


def malformed_fields(fields: tuple[tuple[bytes, bytes], ...]) -> bool:
    """Does any header name or value carry a byte HTTP forbids there (NUL, CR, LF, ...)?"""
    for name, value in fields:
        if not name or not _FORBIDDEN_IN_FIELDS.isdisjoint(name) or b" " in name or b":" in name:
            return True
        if not _FORBIDDEN_IN_FIELDS.isdisjoint(value):
            return True
    return False


# RFC 9110 token characters: what a method may be made of.
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def malformed_method(method: bytes) -> bool:
    """Is the method empty or not an HTTP token (e.g. `G\0ET`)? The upstream client refuses it."""
    return not method or not _TCHAR.issuperset(method)


_FORBIDDEN_IN_TARGET = frozenset(range(0x21)) | {0x7F}


def malformed_target(target: bytes) -> bool:
    """Does the request target hold a control byte (RFC 9112 allows none)? mitmproxy splits the
    request line on whitespace only, and the upstream client refuses such a target."""
    return not _FORBIDDEN_IN_TARGET.isdisjoint(target)


class Overflow(Exception):
    """The circuit breaker refused the request (503 UO)."""


class PoolGate:
    """At most `capacity` requests upstream at once; up to `max_pending` more wait for a slot.

    With HTTP/1.1 one request uses one connection, so the capacity is the smaller of
    maxConnections and maxRequests. Beyond capacity + pending, requests overflow at once.
    """

    def __init__(self, spec: CompiledConnectionPool | None) -> None:
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.configure(spec)

    def configure(self, spec: CompiledConnectionPool | None) -> None:
        limits = [v for v in (spec.max_connections, spec.max_requests) if v] if spec else []
        self.capacity = min(limits) if limits else None
        self.max_pending = spec.max_pending_requests if spec else None

    async def acquire(self) -> None:
        if self.capacity is None or self.active < self.capacity:
            self.active += 1
            return
        if self.max_pending is not None and len(self._waiters) >= self.max_pending:
            raise Overflow()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # the releasing request hands its slot over (active unchanged)
        except BaseException:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                self.release()  # slot was handed to us just as we were cancelled
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active = max(0, self.active - 1)


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved; one token per request."""

    def __init__(self, spec: CompiledRateLimit) -> None:
        self.rate = spec.requests_per_second
        self.burst = max(spec.burst, 1)
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
