"""Compare two compiled meshes (sidecar name -> SidecarConfig) and list what changes.

Compiled configs are compared, not source files, so a change shows up exactly where the sidecars
will behave differently (a Mesh default that reaches every route, a caller filtered out of a
rule). A service's route is compiled into the config of every caller; a change to it is
reported once, under the service, with the callers it affects in `affects`. Change items are
sorted by (sidecar, path, change) so the output is stable.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from meshctl.contract import (
    Access,
    Destination,
    Gateway,
    GatewayRule,
    Inbound,
    RouteRule,
    SidecarConfig,
)
from meshctl.diff import words

ChangeKind = Literal["added", "removed", "modified"]


@dataclass(frozen=True)
class Change:
    sidecar: str  # "reviews", "gateway/public"
    path: str  # where in the compiled config, e.g. "route.rules[default].backends"
    change: ChangeKind
    old: Any  # JSON value before (None when added)
    new: Any  # JSON value after (None when removed)
    summary: str  # the change in a reviewer's words, without the sidecar name
    affects: tuple[str, ...] = field(default=())  # sidecars whose config carries this change

    def sort_key(self) -> tuple[str, str, str]:
        return (self.sidecar, self.path, self.change)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sidecar": self.sidecar,
            "path": self.path,
            "change": self.change,
            "old": self.old,
            "new": self.new,
            "summary": self.summary,
            "affects": list(self.affects),
        }


@dataclass(frozen=True)
class _Item:
    """A change relative to one part of a config; the sidecar is attached by the caller."""

    path: str
    change: ChangeKind
    old: Any
    new: Any
    summary: str


def _json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


# --- generic leaf comparison ----------------------------------------------------------------


def _flatten(value: Any, prefix: tuple[str, ...], out: dict[tuple[str, ...], Any]) -> None:
    if isinstance(value, dict) and value:
        for key, child in value.items():
            _flatten(child, (*prefix, str(key)), out)
    else:
        out[prefix] = value


def leaf_changes(old: Any, new: Any) -> list[str]:
    """["attempts 2 -> 3", "perTryTimeout none -> 500ms"]: every changed leaf, in words."""
    before: dict[tuple[str, ...], Any] = {}
    after: dict[tuple[str, ...], Any] = {}
    _flatten(_json(old), (), before)
    _flatten(_json(new), (), after)
    phrases = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        last = key[-1] if key else ""
        label = ".".join(words.field_name(k) for k in key)
        phrase = f"{words.scalar(last, a)} -> {words.scalar(last, b)}"
        phrases.append(f"{label} {phrase}" if label else phrase)
    return phrases


def _modified(path: str, old: Any, new: Any, summary: str) -> _Item:
    return _Item(path, "modified", _json(old), _json(new), summary)


# --- route rules ------------------------------------------------------------------------------

Rule = RouteRule | GatewayRule


def _action(rule: Rule, service: str | None) -> str:
    if isinstance(rule, RouteRule) and rule.backends:
        return words.backends(rule.backends, service)
    if isinstance(rule, GatewayRule) and rule.service is not None:
        return f"service {rule.service}"
    if rule.redirect is not None:
        return f"redirect {words.redirect(rule.redirect)}"
    if rule.respond is not None:
        return f"respond {words.respond(rule.respond)}"
    return "nothing"


def describe_rule(rule: Rule, service: str | None) -> str:
    text = f"{words.matches(rule.matches)} -> {_action(rule, service)}"
    if isinstance(rule, RouteRule):
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


def _weights(old: RouteRule, new: RouteRule, service: str | None) -> str:
    def keyed(rule: RouteRule) -> dict[str, int]:
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
    return "weights " + ", ".join(parts)


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


def _diff_rule(old: Rule, new: Rule, base: str, service: str | None) -> list[_Item]:
    items = []
    label = f'rule "{new.name}"'
    for name in type(new).model_fields:
        a, b = getattr(old, name), getattr(new, name)
        if a == b:
            continue
        path = f"{base}[{new.name}].{name}"
        if name == "backends":
            assert isinstance(old, RouteRule) and isinstance(new, RouteRule)
            summary = f"{label} {_weights(old, new, service)}"
        else:
            described = (_field_words(name, a, service), _field_words(name, b, service))
            field_label = _FIELD_LABELS.get(name, words.field_name(name))
            if described[0] is not None and described[1] is not None:
                summary = f"{label} {field_label} {described[0]} -> {described[1]}"
            else:
                summary = f"{label} {field_label} " + ", ".join(leaf_changes(a, b))
        items.append(_modified(path, a, b, summary))
    return items


def diff_rules(old: tuple[Rule, ...], new: tuple[Rule, ...], base: str, service: str | None) -> list[_Item]:
    """Rules are matched by name: added, removed, reordered, or changed field by field."""
    before = {r.name: (i, r) for i, r in enumerate(old)}
    after = {r.name: (i, r) for i, r in enumerate(new)}
    items: list[_Item] = []
    for name, (_, rule) in before.items():
        if name not in after:
            items.append(
                _Item(
                    f"{base}[{name}]",
                    "removed",
                    _json(rule),
                    None,
                    f'rule "{name}" removed (was: {describe_rule(rule, service)})',
                )
            )
    for name, (index, rule) in after.items():
        if name not in before:
            items.append(
                _Item(
                    f"{base}[{name}]",
                    "added",
                    None,
                    _json(rule),
                    f'rule "{name}" added at position {index + 1} of {len(new)}: ' + describe_rule(rule, service),
                )
            )
        else:
            items.extend(_diff_rule(before[name][1], rule, base, service))
    kept_old = [r.name for r in old if r.name in after]
    kept_new = [r.name for r in new if r.name in before]
    if kept_old != kept_new:
        items.append(
            _modified(
                base,
                [r.name for r in old],
                [r.name for r in new],
                f"rule order {', '.join(kept_old)} -> {', '.join(kept_new)} (the first matching rule wins)",
            )
        )
    return items


# --- destinations (a service's route and traffic policy, as its callers see it) ---------------


def diff_destination(old: Destination, new: Destination) -> list[_Item]:
    service = new.service
    items: list[_Item] = []
    if old.has_route != new.has_route:
        summary = (
            "explicit Route added: requests that match no rule now get 404 NR"
            if new.has_route
            else "explicit Route removed: all versions spread by the load balancer"
        )
        items.append(_modified("route", old.has_route, new.has_route, summary))
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
            _modified(
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
            items.append(_modified(name, a, b, f"{name} {a} -> {b}"))
    for name in type(new.traffic_policy).model_fields:
        a, b = getattr(old.traffic_policy, name), getattr(new.traffic_policy, name)
        if a != b:
            items.append(
                _modified(
                    f"traffic_policy.{name}",
                    a,
                    b,
                    f"traffic policy {words.field_name(name)} " + ", ".join(_policy_phrases(a, b)),
                )
            )
    return items


def _policy_phrases(a: Any, b: Any) -> list[str]:
    if a is None:
        return ["added: " + ", ".join(leaf_changes(None, b)).replace("none -> ", "")]
    if b is None:
        return ["removed"]
    return leaf_changes(a, b)


# --- inbound: access policy, rate limit, health check -----------------------------------------


def _describe_policy(rules: tuple[Any, ...]) -> str:
    return "; ".join(words.access_rule(r) for r in rules) or "no rules"


def diff_access(old: Access, new: Access) -> list[_Item]:
    items: list[_Item] = []
    if old.default != new.default:
        items.append(
            _modified(
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
                _Item(
                    path,
                    "added",
                    None,
                    _json(b),
                    f'access policy "{name}" added: {b.action} {_describe_policy(b.rules)}',
                )
            )
        elif b is None and a is not None:
            items.append(
                _Item(
                    path,
                    "removed",
                    _json(a),
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
            items.append(_modified(path, a, b, f'access policy "{name}" ' + ", ".join(parts)))
    return items


def diff_inbound(old: Inbound | None, new: Inbound | None) -> list[_Item]:
    if old is None or new is None:
        if old == new:
            return []
        return [_modified("inbound", old, new, f"inbound {'added' if new else 'removed'}")]
    items = diff_access(old.access, new.access)
    if old.protocol != new.protocol:
        items.append(
            _modified("inbound.protocol", old.protocol, new.protocol, f"protocol {old.protocol} -> {new.protocol}")
        )
    if old.rate_limit != new.rate_limit:

        def limit(value: Any) -> str:
            if value is None:
                return "none"
            return f"{value.requests_per_second:g}/s burst {value.burst}"

        items.append(
            _modified(
                "inbound.rate_limit",
                old.rate_limit,
                new.rate_limit,
                f"rate limit {limit(old.rate_limit)} -> {limit(new.rate_limit)}",
            )
        )
    if old.health_check != new.health_check:
        items.append(
            _modified(
                "inbound.health_check",
                old.health_check,
                new.health_check,
                "health check " + ", ".join(_policy_phrases(old.health_check, new.health_check)),
            )
        )
    return items


def diff_gateway(old: Gateway | None, new: Gateway | None) -> list[_Item]:
    if old is None or new is None:
        if old == new:
            return []
        return [_modified("gateway", old, new, f"gateway {'added' if new else 'removed'}")]
    items = []
    if old.port != new.port:
        items.append(_modified("gateway.port", old.port, new.port, f"port {old.port} -> {new.port}"))
    items.extend(diff_rules(old.rules, new.rules, "gateway.rules", None))
    return items


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


def diff_sidecar_own(old: SidecarConfig, new: SidecarConfig) -> list[_Item]:
    """Everything of a sidecar except its destinations (reported per destination service)."""
    items: list[_Item] = []
    for name, label in _SIDECAR_WIDE.items():
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            phrase = f"{a} -> {b}" if not isinstance(a, BaseModel) else ", ".join(leaf_changes(a, b))
            items.append(_modified(name, a, b, f"{label} {phrase}"))
    items.extend(diff_inbound(old.inbound, new.inbound))
    items.extend(diff_gateway(old.gateway, new.gateway))
    return items


def _describe_sidecar(cfg: SidecarConfig, versions: tuple[str, ...] | None) -> str:
    if cfg.kind == "gateway" and cfg.gateway is not None:
        rules = ", ".join(r.name for r in cfg.gateway.rules) or "none"
        return f"gateway on port {cfg.gateway.port} (rules {rules})"
    text = "service"
    if versions:
        text += f" (versions {', '.join(versions)})"
    return text


def _versions_of(name: str, configs: Mapping[str, SidecarConfig]) -> tuple[str, ...] | None:
    for cfg in configs.values():
        dest = cfg.destinations.get(name)
        if dest is not None:
            return dest.versions
    return None


def _callers(configs: Mapping[str, SidecarConfig]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for name, cfg in configs.items():
        for dest in cfg.destinations:
            out[dest].add(name)
    return out


def _own_fields_equal(old: SidecarConfig, new: SidecarConfig) -> bool:
    """Equal apart from the revision (differs between any two builds) and the destinations."""
    return all(
        getattr(old, name) == getattr(new, name)
        for name in type(new).model_fields
        if name not in ("revision", "destinations")
    )


def diff_meshes(old: Mapping[str, SidecarConfig], new: Mapping[str, SidecarConfig]) -> list[Change]:
    """Every change between two compiled meshes, sorted by (sidecar, path, change)."""
    changes: list[Change] = []
    added = set(new) - set(old)
    removed = set(old) - set(new)
    for name in sorted(added):
        cfg = new[name]
        changes.append(
            Change(name, "", "added", None, _json(cfg), f"{_describe_sidecar(cfg, _versions_of(name, new))} added")
        )
    for name in sorted(removed):
        cfg = old[name]
        changes.append(
            Change(name, "", "removed", _json(cfg), None, f"{_describe_sidecar(cfg, _versions_of(name, old))} removed")
        )

    # Destination changes, grouped across callers: (service, item) -> callers.
    groups: dict[tuple[str, str, str, str], tuple[_Item, list[str]]] = {}
    seen: dict[tuple[int, int], list[_Item]] = {}  # identical objects are compiled once, shared
    shared_callers: dict[str, list[str]] = defaultdict(list)
    for name in sorted(set(old) & set(new)):
        a, b = old[name], new[name]
        if not _own_fields_equal(a, b):
            changes.extend(
                Change(name, i.path, i.change, i.old, i.new, i.summary, (name,)) for i in diff_sidecar_own(a, b)
            )
        for dest, da in a.destinations.items():
            db = b.destinations.get(dest)
            if db is None:
                continue
            shared_callers[dest].append(name)
            # The compiler shares one Destination object among callers that see the same
            # route: compare each (old, new) pair of objects once, not once per caller.
            key = (id(da), id(db))
            items = seen.get(key)
            if items is None:
                items = seen[key] = [] if da == db else diff_destination(da, db)
            for item in items:
                gkey = (dest, item.path, item.change, item.summary)
                groups.setdefault(gkey, (item, []))[1].append(name)
    for (dest, *_), (item, callers) in groups.items():
        summary = item.summary
        if len(callers) < len(shared_callers[dest]):
            summary += f" (for calls from {', '.join(callers)})"
        changes.append(Change(dest, item.path, item.change, item.old, item.new, summary, tuple(callers)))

    # Who may call whom: a destination appears in or disappears from a caller's config.
    callers_old, callers_new = _callers(old), _callers(new)
    for dest in sorted(set(callers_old) | set(callers_new)):
        if dest in added or dest in removed:
            continue
        before = callers_old.get(dest, set()) - removed
        after = callers_new.get(dest, set()) - added
        if before == after:
            continue
        parts = []
        if after - before:
            parts.append(f"may now be called by {', '.join(sorted(after - before))}")
        if before - after:
            parts.append(f"may no longer be called by {', '.join(sorted(before - after))}")
        changes.append(
            Change(
                dest,
                "callers",
                "modified",
                sorted(before),
                sorted(after),
                "; ".join(parts),
                tuple(sorted(before ^ after)),
            )
        )
    changes.sort(key=Change.sort_key)
    return changes
