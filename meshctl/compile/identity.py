"""Identities of policy sources, and who may ever reach whom (to prune outbound tables)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from meshctl import spiffe
from meshctl.model import AccessPolicy

DEFAULT_TRUST_DOMAIN = "cluster.local"


def source_identity(trust_domain: str, source: str) -> str:
    """A policy source as a SPIFFE ID: 'reviews' -> spiffe://td/service/reviews,
    'gateway/public' -> spiffe://td/gateway/public."""
    kind, _, name = source.rpartition("/")
    return spiffe.spiffe_id(trust_domain, kind or "service", name)


@dataclass(frozen=True)
class Admission:
    """Which callers a service's access policies could ever admit, for any method and path.

    Mirrors the inbound decision (deny first, then allow policies, then the default) with method
    and path left open, so pruning never refuses a request the destination would allow.
    """

    open_to_all: bool = True  # every caller not blocked may be admitted
    allowed: frozenset[str] = frozenset()  # admitted callers when not open to all
    blocked: frozenset[str] = frozenset()  # callers an unconditional deny rule refuses
    closed: bool = False  # an unconditional deny rule refuses everyone

    def admits(self, caller: str) -> bool:
        if self.closed or caller in self.blocked:
            return False
        return self.open_to_all or caller in self.allowed


def admission(policies: Iterable[AccessPolicy], access_default: str, has_identity: bool) -> Admission:
    """`has_identity` is false under mtls: disabled, where rules naming callers never match."""
    open_to_all, closed, any_allow_policy = False, False, False
    allowed: set[str] = set()
    blocked: set[str] = set()
    for policy in policies:
        if policy.spec.action == "allow":
            any_allow_policy = True
        for rule in policy.spec.rules:
            sources = rule.from_
            matches_everyone = sources is None or ("*" in sources and has_identity)
            named = set() if sources is None or not has_identity else set(sources) - {"*"}
            if policy.spec.action == "deny":
                if rule.methods or rule.paths:
                    continue  # refuses only some requests: the caller may still be admitted
                closed = closed or matches_everyone
                blocked |= named
            else:
                open_to_all = open_to_all or matches_everyone
                allowed |= named
    if not any_allow_policy:
        open_to_all = access_default == "allow"
    return Admission(open_to_all, frozenset(allowed), frozenset(blocked), closed)
