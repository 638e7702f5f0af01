"""Reading and editing one Route rule's weights in the policy files, keeping everything else.

A promotion step is a commit that changes nothing but the weights of one rule, so a reviewer
reads it in one line of `git diff`. ruamel.yaml's round-trip mode keeps comments, key order,
flow style and the other documents of the file; only the `weight` values change (and, at the
end, the retired version's backend goes away).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from meshctl.errors import UsageError
from meshctl.fsio import write_atomic
from meshctl.sources import is_policy_file
from meshctl.sources.worktree import display_path

DEFAULT_RULE = "default"


@dataclass(frozen=True)
class RuleWeights:
    """Where a service's promoted rule lives and the weights it holds now."""

    path: Path  # the file holding the Route (to be created when `created`)
    rule: str
    weights: dict[str, int]  # version -> weight, of the service's own versions
    created: bool = False  # no Route yet: the first step writes one


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a user's long lines
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _load(path: Path) -> list[Any]:
    try:
        return list(_yaml().load_all(path.read_text(encoding="utf-8")))
    except (OSError, YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {display_path(path)}: {exc}") from None


def _route_of(doc: Any, service: str) -> bool:
    return (
        isinstance(doc, dict)
        and doc.get("kind") == "Route"
        and isinstance(doc.get("spec"), dict)
        and doc["spec"].get("service") == service
    )


def _pick_rule(rules: Any, rule: str | None, where: str) -> Any:
    if not isinstance(rules, list) or not rules:
        raise UsageError(f"{where}: the Route has no rules")
    named = [r for r in rules if isinstance(r, dict) and r.get("name") == (rule or DEFAULT_RULE)]
    if named:
        return named[0]
    if rule is not None:
        names = ", ".join(str(r.get("name")) for r in rules if isinstance(r, dict))
        raise UsageError(f"{where}: no rule named {rule!r} (rules: {names})")
    last = rules[-1]  # no rule named "default": the last one, the catch-all
    if not isinstance(last, dict):
        raise UsageError(f"{where}: the last rule is not a mapping")
    return last


def _own_backends(rule: Any, service: str, where: str) -> list[Any]:
    backends = rule.get("backends")
    if not isinstance(backends, list) or not backends:
        raise UsageError(f"{where}: rule {rule.get('name')!r} has no backends to shift")
    own = [
        b for b in backends
        if isinstance(b, dict) and b.get("service", service) == service and "version" in b
    ]
    if len(own) != len(backends):
        raise UsageError(
            f"{where}: rule {rule.get('name')!r} sends to other services too; "
            "promote shifts weights between versions of one service only"
        )
    return own


def _find(policy_dir: Path, service: str) -> tuple[Path, list[Any], int] | None:
    found = None
    for path in sorted(policy_dir.rglob("*")):
        relative = path.relative_to(policy_dir).as_posix()
        if not path.is_file() or not is_policy_file(relative) or relative.startswith("tests/"):
            continue
        docs = _load(path)
        for i, doc in enumerate(docs):
            if _route_of(doc, service):
                if found is not None:
                    raise UsageError(f"two Routes for {service}: {display_path(found[0])} "
                                     f"and {display_path(path)}")
                found = (path, docs, i)
    return found


def read_weights(policy_dir: Path, service: str, rule: str | None) -> RuleWeights:
    found = _find(policy_dir, service)
    if found is None:
        return RuleWeights(policy_dir / "routes" / f"{service}.yaml", rule or DEFAULT_RULE, {},
                           created=True)
    path, docs, i = found
    where = display_path(path)
    chosen = _pick_rule(docs[i]["spec"].get("rules"), rule, where)
    weights = {}
    backends = _own_backends(chosen, service, where)
    for b in backends:
        weight = b.get("weight", 100 if len(backends) == 1 else None)
        if not isinstance(weight, int):
            raise UsageError(f"{where}: backend {b.get('version')!r} has no integer weight")
        weights[str(b["version"])] = weight
    return RuleWeights(path, str(chosen.get("name") or ""), weights)


def write_weights(policy_dir: Path, service: str, current: RuleWeights,
                  weights: dict[str, int]) -> None:
    """Set the rule's weights to `weights` (versions missing from it are removed)."""
    if current.created:
        write_atomic(current.path, _new_route(service, current.rule, weights))
        return
    found = _find(policy_dir, service)
    if found is None or found[0] != current.path:
        raise UsageError(f"the Route for {service} moved while promoting; start again")
    path, docs, i = found
    where = display_path(path)
    chosen = _pick_rule(docs[i]["spec"].get("rules"), current.rule, where)
    backends: CommentedSeq = chosen["backends"]
    _own_backends(chosen, service, where)
    # In place, item by item: replacing the list would drop the comments attached to it.
    for index in reversed(range(len(backends))):
        version = str(backends[index]["version"])
        if version in weights:
            backends[index]["weight"] = weights[version]
        else:
            del backends[index]
    present = {str(b["version"]) for b in backends}
    for version, weight in weights.items():
        if version not in present:
            entry = CommentedMap([("version", version), ("weight", weight)])
            entry.fa.set_flow_style()
            backends.append(entry)
    buffer = io.StringIO()
    _yaml().dump_all(docs, buffer)
    write_atomic(path, buffer.getvalue())


def _new_route(service: str, rule: str, weights: dict[str, int]) -> str:
    lines = [
        f"# Traffic split of {service}, written by `meshctl promote`.",
        "apiVersion: meshctl/v1alpha1",
        "kind: Route",
        "metadata:",
        f"  name: {service}",
        "spec:",
        f"  service: {service}",
        "  rules:",
        f"    - name: {rule}",
        "      backends:",
    ]
    lines += [f"        - {{version: {v}, weight: {w}}}" for v, w in weights.items()]
    return "\n".join(lines) + "\n"


def step_weights(current: dict[str, int], target: str, source: str, percent: int) -> dict[str, int]:
    """Weights with `percent` on `target`, taken from `source`; other versions keep theirs."""
    others = sum(w for v, w in current.items() if v not in (target, source))
    if others + percent > 100:
        raise UsageError(
            f"{percent}% for {target} leaves less than nothing for {source}: other versions "
            f"of the rule hold {others}%"
        )
    weights = dict(current)
    weights[target] = percent
    weights[source] = 100 - others - percent
    return weights
