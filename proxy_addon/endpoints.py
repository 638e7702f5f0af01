"""Endpoint state of one destination: load balancing, outlier ejection and health.

State lives across config reloads (keyed by "host:port"), so an ejected endpoint stays ejected
and round-robin keeps its place when the policy changes. Times are `time.monotonic()` seconds.

As Envoy: outlier detection never ejects more than `maxEjectionPercent` of a destination's
endpoints (so the only endpoint of a service is never ejected at 50%); below the panic
threshold of available endpoints a pick ignores health and ejection altogether (better a
request to a doubtful endpoint than none); a passing active health check ends an ejection.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from meshctl.contract import CompiledBackend, CompiledOutlierDetection, LoadBalancer
from meshctl.decision.routing import pick_sticky, pick_weighted, rendezvous_index

MAX_EJECTION_S = 300.0
PANIC_THRESHOLD_PERCENT = 50.0  # Envoy's healthy_panic_threshold default


@dataclass(slots=True)
class Endpoint:
    address: str
    version: str
    active: int = 0  # requests in flight (least-request)
    consecutive_5xx: int = 0
    ejected_until: float = 0.0
    ejections: int = 0
    healthy: bool = True  # from active health checks
    hc_failures: int = 0
    hc_successes: int = 0

    def available(self, now: float) -> bool:
        return self.healthy and self.ejected_until <= now


class EndpointSet:
    """All endpoints this sidecar knows for one destination service."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._by_address: dict[str, Endpoint] = {}
        self._rr = 0

    def get(self, address: str, version: str) -> Endpoint:
        ep = self._by_address.get(address)
        if ep is None:
            ep = self._by_address[address] = Endpoint(address, version)
        elif ep.version != version:
            ep.version = version
        return ep

    def known(self) -> list[Endpoint]:
        return list(self._by_address.values())

    def retain(self, addresses: set[str]) -> None:
        for address in list(self._by_address):
            if address not in addresses:
                del self._by_address[address]

    def pick(
        self,
        candidates: Sequence[Endpoint],
        lb: LoadBalancer,
        now: float,
        avoid: set[str],
        hash_key: str | None = None,
    ) -> Endpoint | None:
        """Choose one available endpoint, preferring ones not in `avoid` (just failed).

        In panic (fewer than PANIC_THRESHOLD_PERCENT of the candidates available) every
        candidate is a choice again; None only when there is no candidate at all."""
        pool = [ep for ep in candidates if ep.available(now)]
        if len(pool) * 100.0 < PANIC_THRESHOLD_PERCENT * len(candidates):
            pool = list(candidates)
        if not pool:
            return None
        fresh = [ep for ep in pool if ep.address not in avoid]
        if fresh:
            pool = fresh
        if len(pool) == 1:
            return pool[0]
        if lb.policy == "hash" and hash_key is not None:
            return pool[rendezvous_index([ep.address for ep in pool], hash_key)]
        if lb.policy == "random" or lb.policy == "hash":
            return random.choice(pool)
        if lb.policy == "least-request":
            a, b = random.sample(pool, 2)  # power of two choices, as Envoy
            return a if a.active <= b.active else b
        self._rr += 1
        return pool[self._rr % len(pool)]

    def any_available(self, candidates: Sequence[Endpoint], now: float) -> bool:
        return any(ep.available(now) for ep in candidates)

    def uneject(self, ep: Endpoint) -> bool:
        """End an ejection early (an active health check passed); True if it was ejected."""
        was = ep.ejected_until > 0.0
        ep.ejected_until = 0.0
        return was

    def ejected(self, now: float) -> list[Endpoint]:
        return [ep for ep in self._by_address.values() if ep.ejected_until > now]

    def record(
        self, ep: Endpoint, failed_5xx: bool, now: float, od: CompiledOutlierDetection | None,
    ) -> bool:
        """Count one result; return True when it ejected the endpoint."""
        if not failed_5xx:
            ep.consecutive_5xx = 0
            return False
        ep.consecutive_5xx += 1
        if od is None or ep.consecutive_5xx < od.consecutive_5xx or ep.ejected_until > now:
            return False
        ejected = sum(1 for e in self._by_address.values() if e.ejected_until > now)
        # Within maxEjectionPercent of every endpoint of the destination, this one included:
        # one of one is 100%, so a lone endpoint is ejected only when 100% is allowed.
        if (ejected + 1) * 100.0 > od.max_ejection_percent * len(self._by_address):
            return False
        ep.ejections += 1
        ep.consecutive_5xx = 0
        duration = min(od.base_ejection_time_ms / 1000.0 * ep.ejections, MAX_EJECTION_S)
        ep.ejected_until = now + duration
        return True


def healthy_backend(
    backends: Sequence[CompiledBackend],
    chosen: CompiledBackend,
    has_available: Callable[[CompiledBackend], bool],
    sticky_key: str | None,
) -> CompiledBackend:
    """`chosen`, unless its version has no available endpoint while another backend of the rule
    has: then one of those (by the sticky key when there is one, so a user moves once and
    comes back once, else by weight). With no backend available, `chosen` stays (panic)."""
    if len(backends) < 2 or has_available(chosen):
        return chosen
    others = [b for b in backends if b is not chosen and b.weight > 0 and has_available(b)]
    if not others:
        return chosen
    if sticky_key is not None:
        return pick_sticky(others, sticky_key)
    return pick_weighted(others, random.random())
