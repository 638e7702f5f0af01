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

from meshctl.contract import SidecarConfig
from meshctl.diff.inbound import diff_sidecar_own
from meshctl.diff.items import Change, Item, to_json
from meshctl.diff.rules import diff_destination


def _describe_sidecar(cfg: SidecarConfig, versions: tuple[str, ...] | None) -> str:
    if cfg.kind == "gateway" and cfg.gateway is not None:
        rules = ", ".join(r.name for r in cfg.gateway.rules) or "none"
        workers = cfg.gateway.workers
        each = "" if workers == 1 else f"; workers {workers}"
        return f"gateway on port {cfg.gateway.port} (rules {rules}{each})"
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
            Change(name, "", "added", None, to_json(cfg), f"{_describe_sidecar(cfg, _versions_of(name, new))} added")
        )
    for name in sorted(removed):
        cfg = old[name]
        changes.append(
            Change(
                name, "", "removed", to_json(cfg), None, f"{_describe_sidecar(cfg, _versions_of(name, old))} removed"
            )
        )

    # Destination changes, grouped across callers: (service, item) -> callers.
    groups: dict[tuple[str, str, str, str], tuple[Item, list[str]]] = {}
    seen: dict[tuple[int, int], list[Item]] = {}  # identical objects are compiled once, shared
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
