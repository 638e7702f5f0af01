"""Route rules and destinations (a service's route as its callers see it): what changed, in words."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from meshctl.contract import CompiledBackend, CompiledGatewayRule, CompiledRouteRule, Destination
from meshctl.decision import routing
from meshctl.diff import words
from meshctl.diff.items import Item, leaf_changes, modified, other_fields, policy_phrases, to_json

# --- route rules ------------------------------------------------------------------------------

Rule = CompiledRouteRule | CompiledGatewayRule


def _action(rule: Rule, service: str | None) -> str:
    if isinstance(rule, CompiledRouteRule) and rule.backends:
        return words.backends(rule.backends, service)
    if isinstance(rule, CompiledGatewayRule) and rule.service is not None:
        return f"service {rule.service}"
    if rule.redirect is not None:
        return f"redirect {words.redirect(rule.redirect)}"
    if rule.respond is not None:
        return f"respond {words.respond(rule.respond)}"
    return "nothing"


def describe_rule(rule: Rule, service: str | None) -> str:
    text = f"{words.matches(rule.matches)} -> {_action(rule, service)}"
    if isinstance(rule, CompiledRouteRule):
        extras = []
        if rule.timeout_ms is not None:
            extras.append(f"timeout {words.duration(rule.timeout_ms)}")
        if rule.retries.attempts:
            extras.append(f"retries {rule.retries.attempts}")
        if rule.fault is not None:
            extras.append(f"fault {words.fault(rule.fault)}")
        if rule.mirror is not None:
            extras.append(f"mirror {words.mirror(rule.mirror, service)}")
        if extras:
            text += f" ({'; '.join(extras)})"
    return text


def _weights(old: CompiledRouteRule, new: CompiledRouteRule, service: str | None) -> str:
    def keyed(rule: CompiledRouteRule) -> dict[str, int]:
        return {words.backend_label(b, service): b.weight for b in rule.backends}

    a, b = keyed(old), keyed(new)
    parts = []
    for label in list(a) + [k for k in b if k not in a]:
        if label not in b:
            parts.append(f"{label} {a[label]} -> removed")
        elif label not in a:
            parts.append(f"{label} added at {b[label]}")
        elif a[label] != b[label]:
            parts.append(f"{label} {a[label]} -> {b[label]}")
    if not parts:  # same weights, other order
        return f"backends {words.backends(old.backends, service)} -> " + words.backends(new.backends, service)
    text = "weights " + ", ".join(parts)
    if old.sticky is not None and old.sticky == new.sticky and old.backends and new.backends:
        text += f" (sticky: about {sticky_users_moved(old, new):.0f}% of users change backend)"
    return text


STICKY_SAMPLE = 4000  # users simulated: the estimate is within about a point


def sticky_users_moved(old: CompiledRouteRule, new: CompiledRouteRule) -> float:
    """Percent of sticky users whose backend changes, by the sidecar's own choice function.

    An A/B reviewer's question: a 90/10 -> 80/20 change should move about 10% of users, not
    reshuffle everyone. Simulated over sample keys with `routing.pick_sticky`; memoized on the
    weights, which many routes share.
    """
    return _moved(_split_key(old), _split_key(new))


def _split_key(rule: CompiledRouteRule) -> tuple[tuple[str, str | None, int], ...]:
    return tuple((b.service, b.version, b.weight) for b in rule.backends)


@lru_cache(maxsize=256)
def _moved(old: tuple[tuple[str, str | None, int], ...], new: tuple[tuple[str, str | None, int], ...]) -> float:
    before = [CompiledBackend(service=s, version=v, weight=w) for s, v, w in old]
    after = [CompiledBackend(service=s, version=v, weight=w) for s, v, w in new]
    moved = sum(
        routing.backend_id(routing.pick_sticky(before, key)) != routing.backend_id(routing.pick_sticky(after, key))
        for key in (f"user-{i}" for i in range(STICKY_SAMPLE))
    )
    return 100.0 * moved / STICKY_SAMPLE


# Rule fields whose change is worth its own sentence; anything else falls back to leaf words.
def _field_words(name: str, value: Any, service: str | None) -> str | None:
    describers: dict[str, Any] = {
        "matches": words.matches,
        "fault": words.fault,
        "rewrite": words.rewrite,
        "redirect": words.redirect,
        "respond": words.respond,
        "sticky": words.sticky,
        "request_headers": words.header_ops,
        "response_headers": words.header_ops,
        "timeout_ms": words.duration,
    }
    if name == "mirror":
        return words.mirror(value, service)
    describe = describers.get(name)
    return describe(value) if describe is not None else None


_FIELD_LABELS = {
    "matches": "match",
    "timeout_ms": "timeout",
    "request_headers": "request headers",
    "response_headers": "response headers",
}


def _diff_rule(old: Rule, new: Rule, base: str, service: str | None) -> list[Item]:
    items = []
    label = f'rule "{new.name}"'
    for name in type(new).model_fields:
        a, b = getattr(old, name), getattr(new, name)
        if a == b:
            continue
        path = f"{base}[{new.name}].{name}"
        if name == "backends":
            assert isinstance(old, CompiledRouteRule) and isinstance(new, CompiledRouteRule)
            summary = f"{label} {_weights(old, new, service)}"
        else:
            described = (_field_words(name, a, service), _field_words(name, b, service))
            field_label = _FIELD_LABELS.get(name, words.field_name(name))
            if described[0] is not None and described[1] is not None:
                summary = f"{label} {field_label} {described[0]} -> {described[1]}"
            else:
                summary = f"{label} {field_label} " + ", ".join(leaf_changes(a, b))
        items.append(modified(path, a, b, summary))
    return items


def diff_rules(old: tuple[Rule, ...], new: tuple[Rule, ...], base: str, service: str | None) -> list[Item]:
    """Rules are matched by name: added, removed, reordered, or changed field by field."""
    before = {r.name: (i, r) for i, r in enumerate(old)}
    after = {r.name: (i, r) for i, r in enumerate(new)}
    items: list[Item] = []
    for name, (_, rule) in before.items():
        if name not in after:
            items.append(
                Item(
                    f"{base}[{name}]",
                    "removed",
                    to_json(rule),
                    None,
                    f'rule "{name}" removed (was: {describe_rule(rule, service)})',
                )
            )
    for name, (index, rule) in after.items():
        if name not in before:
            items.append(
                Item(
                    f"{base}[{name}]",
                    "added",
                    None,
                    to_json(rule),
                    f'rule "{name}" added at position {index + 1} of {len(new)}: ' + describe_rule(rule, service),
                )
            )
        else:
            items.extend(_diff_rule(before[name][1], rule, base, service))
    kept_old = [r.name for r in old if r.name in after]
    kept_new = [r.name for r in new if r.name in before]
    if kept_old != kept_new:
        items.append(
            modified(
                base,
                [r.name for r in old],
                [r.name for r in new],
                f"rule order {', '.join(kept_old)} -> {', '.join(kept_new)} (the first matching rule wins)",
            )
        )
    return items


# --- destinations (a service's route and traffic policy, as its callers see it) ---------------


def diff_destination(old: Destination, new: Destination) -> list[Item]:
    service = new.service
    items: list[Item] = []
    if old.has_route != new.has_route:
        summary = (
            "explicit Route added: requests that match no rule now get 404 NR"
            if new.has_route
            else "explicit Route removed: all versions spread by the load balancer"
        )
        items.append(modified("route", old.has_route, new.has_route, summary))
    items.extend(diff_rules(old.rules, new.rules, "route.rules", service))
    if old.versions != new.versions:
        added = [v for v in new.versions if v not in old.versions]
        removed = [v for v in old.versions if v not in new.versions]
        detail = "; ".join(
            part
            for part in (
                f"added {', '.join(added)}" if added else "",
                f"removed {', '.join(removed)}" if removed else "",
            )
            if part
        )
        items.append(
            modified(
                "versions",
                old.versions,
                new.versions,
                f"versions {', '.join(old.versions) or 'none'} -> "
                f"{', '.join(new.versions) or 'none'}" + (f" ({detail})" if detail else ""),
            )
        )
    for name in ("protocol", "identity"):
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            items.append(modified(name, a, b, f"{name} {a} -> {b}"))
    for name in type(new.traffic_policy).model_fields:
        a, b = getattr(old.traffic_policy, name), getattr(new.traffic_policy, name)
        if a != b:
            items.append(
                modified(
                    f"traffic_policy.{name}",
                    a,
                    b,
                    f"traffic policy {words.field_name(name)} " + ", ".join(policy_phrases(a, b)),
                )
            )
    return items + other_fields(old, new, _DESTINATION_FIELDS, "")


_DESTINATION_FIELDS = frozenset({"service", "has_route", "rules", "versions", "protocol", "identity", "traffic_policy"})
