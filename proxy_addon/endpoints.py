"""Endpoint state of one destination: load balancing, outlier ejection and health.

State lives across config reloads (keyed by "host:port"), so an ejected endpoint stays ejected
and round-robin keeps its place when the policy changes. Times are `time.monotonic()` seconds.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from meshctl.contract import CompiledOutlierDetection, LoadBalancer
from meshctl.decision.routing import rendezvous_index

MAX_EJECTION_S = 300.0


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
        """Choose one available endpoint, preferring ones not in `avoid` (just failed)."""
        pool = [ep for ep in candidates if ep.available(now)]
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

    def record(
        self, ep: Endpoint, failed_5xx: bool, now: float, od: CompiledOutlierDetection | None,
        total: int,
    ) -> bool:
        """Count one result; return True when it ejected the endpoint."""
        if not failed_5xx:
            ep.consecutive_5xx = 0
            return False
        ep.consecutive_5xx += 1
        if od is None or ep.consecutive_5xx < od.consecutive_5xx or ep.ejected_until > now:
            return False
        ejected = sum(1 for e in self._by_address.values() if e.ejected_until > now)
        # Eject while within maxEjectionPercent; at least one endpoint may always go (Envoy).
        if ejected > 0 and (ejected + 1) * 100.0 > od.max_ejection_percent * max(total, 1):
            return False
        ep.ejections += 1
        ep.consecutive_5xx = 0
        duration = min(od.base_ejection_time_ms / 1000.0 * ep.ejections, MAX_EJECTION_S)
        ep.ejected_until = now + duration
        return True
