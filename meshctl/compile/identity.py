"""SPIFFE identities of mesh workloads, and who may reach whom (for pruning outbound tables)."""

from __future__ import annotations

from collections.abc import Iterable

from meshctl.model import AccessPolicy

DEFAULT_TRUST_DOMAIN = "cluster.local"


def spiffe_id(trust_domain: str, source: str) -> str:
    """'reviews' -> spiffe://td/service/reviews; 'gateway/public' -> spiffe://td/gateway/public."""
    if source.startswith("gateway/"):
        return f"spiffe://{trust_domain}/gateway/{source.removeprefix('gateway/')}"
    return f"spiffe://{trust_domain}/service/{source}"


def _source_matches(sources: list[str] | None, caller: str, has_identity: bool) -> bool:
    if sources is None:
        return True
    if not has_identity:
        return False
    return "*" in sources or caller in sources


def may_ever_call(
    caller: str, policies: Iterable[AccessPolicy], access_default: str, has_identity: bool
) -> bool:
    """False only when no request of `caller` (any method, any path) could be admitted.

    Mirrors the inbound decision (deny first, then allow policies, then the default) with the
    method and path left open, so pruning never refuses a request the destination would allow.
    """
    allow_rules = []
    for policy in policies:
        for rule in policy.spec.rules:
            if policy.spec.action == "deny":
                unconditional = not rule.methods and not rule.paths
                if unconditional and _source_matches(rule.from_, caller, has_identity):
                    return False
            else:
                allow_rules.append(rule)
    if allow_rules:
        return any(_source_matches(r.from_, caller, has_identity) for r in allow_rules)
    return access_default == "allow"
