"""A sidecar's own parts (inbound access, rate limit, gateway, mesh-wide settings): what changed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from meshctl.contract import Access, CompiledGateway, Inbound, SidecarConfig
from meshctl.diff import words
from meshctl.diff.items import Item, leaf_changes, modified, other_fields, policy_phrases, to_json
from meshctl.diff.rules import diff_rules

# --- inbound: access policy, rate limit, health check -----------------------------------------


def _describe_policy(rules: tuple[Any, ...]) -> str:
    return "; ".join(words.access_rule(r) for r in rules) or "no rules"


def diff_access(old: Access, new: Access) -> list[Item]:
    items: list[Item] = other_fields(old, new, frozenset({"default", "policies"}), "inbound.access.")
    if old.default != new.default:
        items.append(
            modified(
                "inbound.access.default",
                old.default,
                new.default,
                f"access default (no policy) {old.default} -> {new.default}",
            )
        )
    before = {p.name: p for p in old.policies}
    after = {p.name: p for p in new.policies}
    for name in sorted(set(before) | set(after)):
        path = f"inbound.access.policies[{name}]"
        a, b = before.get(name), after.get(name)
        if a is None and b is not None:
            items.append(
                Item(
                    path,
                    "added",
                    None,
                    to_json(b),
                    f'access policy "{name}" added: {b.action} {_describe_policy(b.rules)}',
                )
            )
        elif b is None and a is not None:
            items.append(
                Item(
                    path,
                    "removed",
                    to_json(a),
                    None,
                    f'access policy "{name}" removed (was: {a.action} {_describe_policy(a.rules)})',
                )
            )
        elif a is not None and b is not None and a != b:
            parts = []
            if a.action != b.action:
                parts.append(f"action {a.action} -> {b.action}")
            if a.rules != b.rules:
                parts.append(f"rules {_describe_policy(a.rules)} -> {_describe_policy(b.rules)}")
            parts += [i.summary for i in other_fields(a, b, frozenset({"name", "action", "rules"}), "")]
            items.append(modified(path, a, b, f'access policy "{name}" ' + ", ".join(parts)))
    return items


def diff_inbound(old: Inbound | None, new: Inbound | None) -> list[Item]:
    if old is None or new is None:
        if old == new:
            return []
        return [modified("inbound", old, new, f"inbound {'added' if new else 'removed'}")]
    items = diff_access(old.access, new.access)
    if old.protocol != new.protocol:
        items.append(
            modified("inbound.protocol", old.protocol, new.protocol, f"protocol {old.protocol} -> {new.protocol}")
        )
    if old.rate_limit != new.rate_limit:

        def limit(value: Any) -> str:
            if value is None:
                return "none"
            return f"{value.requests_per_second:g}/s burst {value.burst}"

        items.append(
            modified(
                "inbound.rate_limit",
                old.rate_limit,
                new.rate_limit,
                f"rate limit {limit(old.rate_limit)} -> {limit(new.rate_limit)}",
            )
        )
    if old.health_check != new.health_check:
        items.append(
            modified(
                "inbound.health_check",
                old.health_check,
                new.health_check,
                "health check " + ", ".join(policy_phrases(old.health_check, new.health_check)),
            )
        )
    return items + other_fields(old, new, _INBOUND_FIELDS, "inbound.")


_INBOUND_FIELDS = frozenset({"service", "access", "protocol", "rate_limit", "health_check"})


def diff_gateway(old: CompiledGateway | None, new: CompiledGateway | None) -> list[Item]:
    if old is None or new is None:
        if old == new:
            return []
        return [modified("gateway", old, new, f"gateway {'added' if new else 'removed'}")]
    items = []
    if old.port != new.port:
        items.append(modified("gateway.port", old.port, new.port, f"port {old.port} -> {new.port}"))
    if old.workers != new.workers:
        items.append(modified("gateway.workers", old.workers, new.workers,
                              f"workers {old.workers} -> {new.workers}"))
    items.extend(diff_rules(old.rules, new.rules, "gateway.rules", None))
    return items + other_fields(old, new, frozenset({"name", "port", "rules", "workers"}), "gateway.")


# --- whole sidecars ---------------------------------------------------------------------------

_SIDECAR_WIDE = {
    "mtls": "mTLS",
    "outbound_policy": "outbound policy",
    "trust_domain": "trust domain",
    "identity": "identity",
    "mesh": "mesh name",
    "kind": "kind",
    "retry_budget": "retry budget",
    "telemetry": "telemetry",
    "schema_version": "compiled format",
}


def diff_sidecar_own(old: SidecarConfig, new: SidecarConfig) -> list[Item]:
    """Everything of a sidecar except its destinations (reported per destination service)."""
    items: list[Item] = []
    for name, label in _SIDECAR_WIDE.items():
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            phrase = f"{a} -> {b}" if not isinstance(a, BaseModel) else ", ".join(leaf_changes(a, b))
            items.append(modified(name, a, b, f"{label} {phrase}"))
    items.extend(diff_inbound(old.inbound, new.inbound))
    items.extend(diff_gateway(old.gateway, new.gateway))
    return items + other_fields(old, new, _SIDECAR_HANDLED, "")


# Destinations and `denied` are compared across sidecars (per destination service, `callers`).
_SIDECAR_HANDLED = frozenset({*_SIDECAR_WIDE, "revision", "name", "destinations", "denied", "inbound", "gateway"})
