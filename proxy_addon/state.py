"""The running policy: an immutable snapshot per config load, plus state that outlives reloads.

A flow takes the current `Snapshot` when it starts and uses it to the end, so requests in
flight finish under the config they started with. Endpoint health, ejections, circuit-breaker
counters and retry budgets live in `DestinationState`, kept across reloads by service name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshctl.contract import Destination, RuntimeBindings, SidecarConfig
from proxy_addon.endpoints import Endpoint, EndpointSet
from proxy_addon.limits import PoolGate, TokenBucket
from proxy_addon.retry import RetryBudget


@dataclass
class DestinationState:
    service: str
    endpoints: EndpointSet
    gate: PoolGate
    budget: RetryBudget


@dataclass(frozen=True)
class Snapshot:
    config: SidecarConfig
    bindings: RuntimeBindings
    # (service, version or None for "every version") -> endpoints
    candidates: dict[tuple[str, str | None], tuple[Endpoint, ...]] = field(default_factory=dict)
    rate_limiter: TokenBucket | None = None

    @property
    def revision(self) -> str:
        return self.config.revision

    def endpoints_for(self, service: str, version: str | None) -> tuple[Endpoint, ...]:
        return self.candidates.get((service, version), ())

    def destination(self, service: str) -> Destination | None:
        return self.config.destinations.get(service)


def endpoint_report(state: PolicyState, now: float) -> dict[str, list[dict[str, object]]]:
    """Each destination's endpoints as the load balancer sees them (for /config and status)."""
    report: dict[str, list[dict[str, object]]] = {}
    for service, dest in sorted(state.destinations.items()):
        report[service] = [
            {
                "address": ep.address,
                "version": ep.version,
                "healthy": ep.healthy,
                "ejected": ep.ejected_until > now,
                "ejected_for_s": round(max(ep.ejected_until - now, 0.0), 3),
                "ejections": ep.ejections,
            }
            for ep in dest.endpoints.known()
        ]
    return report


class PolicyState:
    """What the addon keeps between flows and reloads."""

    def __init__(self) -> None:
        self.destinations: dict[str, DestinationState] = {}
        self.snapshot: Snapshot | None = None
        self._rate_spec: object = None
        self._rate_limiter: TokenBucket | None = None

    def dest_state(self, service: str) -> DestinationState:
        state = self.destinations.get(service)
        if state is None:
            assert self.snapshot is not None
            dest = self.snapshot.destination(service)
            pool = dest.traffic_policy.connection_pool if dest else None
            state = DestinationState(
                service, EndpointSet(service), PoolGate(pool),
                RetryBudget(self.snapshot.config.retry_budget),
            )
            self.destinations[service] = state
        return state

    def install(self, config: SidecarConfig, bindings: RuntimeBindings) -> Snapshot:
        """Build the snapshot for a new config, carrying state over; make it current."""
        self.snapshot = Snapshot(config, bindings)  # so dest_state() sees the new config
        candidates: dict[tuple[str, str | None], tuple[Endpoint, ...]] = {}
        services = set(config.destinations) | set(bindings.endpoints)
        for service in sorted(services):
            state = self.dest_state(service)
            dest = config.destinations.get(service)
            state.gate.configure(dest.traffic_policy.connection_pool if dest else None)
            state.budget.spec = config.retry_budget
            by_version = bindings.endpoints.get(service, {})
            versions = list(dest.versions) if dest else sorted(by_version)
            every: list[Endpoint] = []
            seen: set[str] = set()
            for version in versions:
                eps = tuple(state.endpoints.get(a, version) for a in by_version.get(version, ()))
                candidates[(service, version)] = eps
                every.extend(eps)
                seen.update(a for a in by_version.get(version, ()))
            candidates[(service, None)] = tuple(every)
            state.endpoints.retain(seen)
        rate = config.inbound.rate_limit if config.inbound else None
        if rate != self._rate_spec:
            self._rate_spec = rate
            self._rate_limiter = TokenBucket(rate) if rate else None
        snapshot = Snapshot(config, bindings, candidates, self._rate_limiter)
        self.snapshot = snapshot
        return snapshot
