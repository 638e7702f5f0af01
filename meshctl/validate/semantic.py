"""Cross-document checks on the typed policy: references, splits, reachability, loops, clashes.

Each check yields positioned diagnostics with a stable rule id (see diagnostics.RULES and
docs/rules.md). Checks run only on documents that passed the schema, so they can trust types.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

from meshctl.model import Located, MeshPolicy, Route, Service
from meshctl.model.gateway import GatewayRule
from meshctl.model.mesh import effective_timeout_ms
from meshctl.model.route import Match, Redirect, RouteRule
from meshctl.model.values import format_duration_ms
from meshctl.regex import full_match, regex_problem
from meshctl.validate.connections import check_connections
from meshctl.validate.diagnostics import Diagnostic, at
from meshctl.validate.edge import check_edge
from meshctl.yamlio import Document, Path

AnyRule = RouteRule | GatewayRule



def check_policy(policy: MeshPolicy) -> list[Diagnostic]:
    checks = (
        _check_mesh_count,
        _check_duplicate_names,
        _check_services,
        _check_routes,
        _check_gateways,
        _check_access_policies,
        _check_ports,
        check_edge,
        check_connections,
    )
    problems: list[Diagnostic] = []
    for check in checks:
        problems.extend(check(policy))
    return problems


# --- helpers -------------------------------------------------------------------------------


def _services(policy: MeshPolicy) -> dict[str, Service]:
    return {loc.obj.metadata.name: loc.obj for loc in policy.services}


def _gateways(policy: MeshPolicy) -> set[str]:
    return {loc.obj.metadata.name for loc in policy.gateways}


# Path conditions every path meets (as Envoy and the Gateway API read them).
_ANY_PATH = ({"prefix": "/"}, {"segmentPrefix": "/"}, {"regex": ".*"}, {"regex": "/.*"}, {"prefix": ""})


def is_catch_all(matches: Sequence[Match] | None) -> bool:
    """A rule with no match, or with a match entry whose only condition is a path every path
    meets (`prefix: /`, `regex: .*`), takes every request."""
    if not matches:
        return True
    for m in matches:
        conditions = m.model_dump(exclude_none=True, by_alias=True)
        path = conditions.pop("path", None)
        if not conditions and (path is None or path in _ANY_PATH):
            return True
    return False


def segment_prefix_holds(prefix: str, path: str) -> bool:
    """Gateway API PathPrefix: whole segments; a trailing slash in the prefix is ignored."""
    base = prefix.rstrip("/")
    return path == base or path.startswith(base + "/") or not base


def _check_source(
    doc: Document, path: Path, source: str, services: dict[str, Service], gateways: set[str]
) -> Iterator[Diagnostic]:
    if source == "*":
        return
    if not source.startswith("gateway/") and "/" in source:
        name, version = source.split("/", 1)
        if name not in services:
            yield at(doc, path, "MESH011", f"unknown service '{name}'{_known(services)}")
            return
        versions = {v.name for v in services[name].spec.versions}
        if version not in versions:
            yield at(doc, path, "MESH013", f"service '{name}' has no version '{version}'{_known(versions)}")
        return
    if source.startswith("gateway/"):
        name = source.removeprefix("gateway/")
        if name not in gateways:
            yield at(doc, path, "MESH014", f"unknown gateway '{name}'{_known(gateways)}")
    elif source not in services:
        yield at(doc, path, "MESH011", f"unknown service '{source}'{_known(services)}")


def _known(names: Iterable[str]) -> str:
    listed = sorted(names)
    if not listed:
        return ""
    shown = ", ".join(listed[:8]) + (", ..." if len(listed) > 8 else "")
    return f" (known: {shown})"


def _check_matches(
    doc: Document, base: Path, matches: Sequence[Match] | None,
    services: dict[str, Service], gateways: set[str],
) -> Iterator[Diagnostic]:
    for i, match in enumerate(matches or ()):
        where = (*base, "match", i)
        if match.path and match.path.regex is not None and (why := regex_problem(match.path.regex)):
            yield at(doc, (*where, "path", "regex"), "MESH021", why)
        for field in ("headers", "query"):
            for name, sm in (getattr(match, field) or {}).items():
                if sm.regex is not None and (why := regex_problem(sm.regex)):
                    yield at(doc, (*where, field, name, "regex"), "MESH021", why)
        for j, source in enumerate(match.from_ or ()):
            yield from _check_source(doc, (*where, "from", j), source, services, gateways)


def _narrowed(rule: AnyRule) -> bool:
    """A gateway rule kept to some listeners or hosts leaves the others to later rules."""
    return isinstance(rule, GatewayRule) and (rule.hosts is not None or rule.listeners is not None)


def _check_reachability(
    doc: Document, rules_path: Path, rules: Sequence[AnyRule], *, warn_no_catch_all: bool
) -> Iterator[Diagnostic]:
    catch_all_at: int | None = None
    for i, rule in enumerate(rules):
        name = rule.name
        if catch_all_at is not None:
            earlier = rules[catch_all_at].name
            yield at(doc, (*rules_path, i), "MESH015",
                     f"rule '{name}' is unreachable: rule '{earlier}' before it matches every request")
        elif is_catch_all(rule.match) and not _narrowed(rule):
            catch_all_at = i
    if warn_no_catch_all and catch_all_at is None and rules:
        last = len(rules) - 1
        yield at(doc, (*rules_path, last), "MESH016",
                 "the last rule is not a catch-all: requests that match no rule get 404 NR; "
                 "add a final rule without 'match' if that is not intended", severity="warning")


def _duplicate_rule_names(doc: Document, rules_path: Path, rules: Sequence[AnyRule]) -> Iterator[Diagnostic]:
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        name = rule.name
        if name in seen:
            yield at(doc, (*rules_path, i, "name"), "MESH010", f"duplicate rule name '{name}'")
        seen.add(name)


def _action_count(rule: object) -> int:
    return sum(getattr(rule, f, None) is not None for f in ("backends", "redirect", "respond", "service"))


# --- checks ----------------------------------------------------------------------------------


def _check_mesh_count(policy: MeshPolicy) -> Iterator[Diagnostic]:
    for loc in policy.meshes[1:]:
        first = policy.meshes[0]
        yield at(loc.doc, ("kind",), "MESH023",
                 f"only one Mesh document is allowed (another is in {first.doc.file})")


def _check_duplicate_names(policy: MeshPolicy) -> Iterator[Diagnostic]:
    groups: list[tuple[str, Sequence[Located[object]]]] = [
        ("Service", policy.services), ("Route", policy.routes),  # type: ignore[list-item]
        ("AccessPolicy", policy.access_policies), ("Gateway", policy.gateways),  # type: ignore[list-item]
    ]
    for kind, items in groups:
        seen: dict[str, Located[object]] = {}
        for loc in sorted(items, key=lambda loc: (loc.doc.file, loc.doc.start.line)):
            name = loc.obj.metadata.name  # type: ignore[attr-defined]
            if name in seen:
                other = seen[name].doc
                yield at(loc.doc, ("metadata", "name"), "MESH010",
                         f"duplicate {kind} name '{name}' (also at {other.file}:{other.start.line})")
            else:
                seen[name] = loc


def _check_services(policy: MeshPolicy) -> Iterator[Diagnostic]:
    for loc in policy.services:
        svc, doc = loc.obj, loc.doc
        names: set[str] = set()
        for i, version in enumerate(svc.spec.versions):
            where = ("spec", "versions", i)
            if version.name in names:
                yield at(doc, (*where, "name"), "MESH010", f"duplicate version name '{version.name}'")
            names.add(version.name)
            if version.run is None and version.endpoints is None:
                yield at(doc, where, "MESH022",
                         f"version '{version.name}' has neither 'run' (a command the local runtime "
                         "starts) nor 'endpoints' (static addresses): add one")
            elif version.run is not None and version.endpoints is not None:
                yield at(doc, where, "MESH022",
                         f"version '{version.name}' has both 'run' and 'endpoints': keep one")
        policy_ = svc.spec.traffic_policy
        if svc.spec.protocol == "tcp" and policy_ and policy_.rate_limit:
            yield at(doc, ("spec", "trafficPolicy", "rateLimit"), "MESH026",
                     "rateLimit is HTTP policy and does not apply to a tcp service", severity="warning")


def _effective_timeout(policy: MeshPolicy, rule: RouteRule) -> int | None:
    mesh = policy.mesh
    return effective_timeout_ms(rule.timeout, mesh.spec.defaults if mesh else None)


def _check_routes(policy: MeshPolicy) -> Iterator[Diagnostic]:
    services, gateways = _services(policy), _gateways(policy)
    first_route: dict[str, Located[Route]] = {}
    for loc in sorted(policy.routes, key=lambda loc: (loc.doc.file, loc.doc.start.line)):
        route, doc = loc.obj, loc.doc
        target = route.spec.service
        if target in first_route:
            other = first_route[target].doc
            yield at(doc, ("spec", "service"), "MESH019",
                     f"service '{target}' already has a Route ({other.file}:{other.start.line}); "
                     "merge the rules into one Route")
        else:
            first_route[target] = loc
        service = services.get(target)
        if service is None:
            yield at(doc, ("spec", "service"), "MESH011", f"unknown service '{target}'{_known(services)}")
        elif service.spec.protocol == "tcp":
            yield at(doc, ("spec", "service"), "MESH026",
                     f"service '{target}' is tcp: routing rules are HTTP policy and do not apply",
                     severity="warning")
        rules_path: Path = ("spec", "rules")
        yield from _duplicate_rule_names(doc, rules_path, route.spec.rules)
        yield from _check_reachability(doc, rules_path, route.spec.rules, warn_no_catch_all=True)
        for i, rule in enumerate(route.spec.rules):
            base = (*rules_path, i)
            yield from _check_matches(doc, base, rule.match, services, gateways)
            yield from _check_rule_action(doc, base, rule, target, services)
            yield from _check_rewrite(doc, base, rule)
            yield from _check_retry_time(doc, base, rule, policy)
            yield from _check_loops(doc, base, rule, target)


def _check_version(
    doc: Document, path: Path, service: str | None, version: str | None, services: dict[str, Service]
) -> Iterator[Diagnostic]:
    if service is None:
        return
    svc = services.get(service)
    if svc is None:
        yield at(doc, path, "MESH011", f"unknown service '{service}'{_known(services)}")
        return
    versions = {v.name for v in svc.spec.versions}
    if version is not None and version not in versions:
        yield at(doc, (*path, "version"), "MESH013",
                 f"service '{service}' has no version '{version}'{_known(versions)}")


def _check_rule_action(
    doc: Document, base: Path, rule: RouteRule, target: str, services: dict[str, Service]
) -> Iterator[Diagnostic]:
    if _action_count(rule) != 1:
        yield at(doc, base, "MESH024",
                 f"rule '{rule.name}' must have exactly one of backends, redirect or respond")
    backends = rule.backends or []
    seen: set[tuple[str, str | None]] = set()
    for j, backend in enumerate(backends):
        svc = backend.service or target
        yield from _check_version(doc, (*base, "backends", j), svc, backend.version, services)
        key = (svc, backend.version)
        if key in seen:
            yield at(doc, (*base, "backends", j), "MESH028",
                     f"backend {svc}/{backend.version or '*'} is listed twice; merge the weights")
        seen.add(key)
    weights = [b.weight for b in backends]
    if len(backends) > 1 and any(w is None for w in weights):
        yield at(doc, (*base, "backends"), "MESH025",
                 "a split over several backends needs a weight on each (integers that sum to 100)")
    elif len(backends) > 1 or (backends and weights[0] is not None):
        total = sum(w or 0 for w in weights)
        if total != 100:
            yield at(doc, (*base, "backends"), "MESH012",
                     f"backends weights sum to {total}, must be 100")
    if rule.mirror is not None:
        yield from _check_version(doc, (*base, "mirror"), rule.mirror.service or target,
                                  rule.mirror.version, services)


def _check_rewrite(doc: Document, base: Path, rule: RouteRule) -> Iterator[Diagnostic]:
    rewrite = rule.rewrite
    if rewrite is None:
        return
    paths = [f for f in ("pathPrefix", "fullPath", "regex") if getattr(rewrite, _SNAKE[f]) is not None]
    if len(paths) > 1:
        yield at(doc, (*base, "rewrite"), "MESH029",
                 f"rule '{rule.name}' rewrites the path twice ({', '.join(paths)}): keep one")
    if rewrite.regex is not None and (why := regex_problem(rewrite.regex.pattern)):
        yield at(doc, (*base, "rewrite", "regex", "pattern"), "MESH021", why)


_SNAKE = {"pathPrefix": "path_prefix", "fullPath": "full_path", "regex": "regex"}


def _check_retry_time(doc: Document, base: Path, rule: RouteRule, policy: MeshPolicy) -> Iterator[Diagnostic]:
    retries = rule.retries
    if retries is None or retries.per_try_timeout is None:
        return
    timeout = _effective_timeout(policy, rule)
    if timeout is None:
        return
    tries = retries.attempts + 1
    total = retries.per_try_timeout * tries
    if total > timeout:
        yield at(doc, (*base, "retries", "perTryTimeout"), "MESH017",
                 f"{tries} tries x perTryTimeout {format_duration_ms(retries.per_try_timeout)} = "
                 f"{format_duration_ms(total)} exceeds the timeout {format_duration_ms(timeout)}: "
                 "the last retries can never run", severity="warning")


def _path_matches(rule_matches: Sequence[Match] | None, path: str) -> bool:
    """Would a request to `path` (other conditions unchanged) match these matches again?"""
    if not rule_matches:
        return True
    for m in rule_matches:
        p = m.path
        if p is None:
            return True
        if p.exact is not None and path == p.exact:
            return True
        if p.prefix is not None and path.startswith(p.prefix):
            return True
        if p.segment_prefix is not None and segment_prefix_holds(p.segment_prefix, path):
            return True
        if p.regex is not None and full_match(p.regex, path):
            return True
    return False


def _check_loops(doc: Document, base: Path, rule: RouteRule, target: str) -> Iterator[Diagnostic]:
    mirror = rule.mirror
    if mirror is not None and rule.backends:
        mirror_service = mirror.service or target
        for backend in rule.backends:
            same_service = (backend.service or target) == mirror_service
            if same_service and (mirror.version is None or backend.version in (None, mirror.version)):
                yield at(doc, (*base, "mirror"), "MESH018",
                         f"rule '{rule.name}' mirrors to {mirror_service}/{mirror.version or '*'}, "
                         "which also receives the primary request: every request would hit it twice")
                break
    yield from _check_redirect_loop(doc, base, rule.name, rule.redirect, rule.match, same_hosts=(None, target))


def _check_redirect_loop(
    doc: Document, base: Path, name: str, redirect: Redirect | None, matches: Sequence[Match] | None,
    *, same_hosts: tuple[str | None, ...],
) -> Iterator[Diagnostic]:
    """A redirect that keeps the host and lands on a path the same rule matches loops forever."""
    if redirect is None or redirect.host not in same_hosts:
        return
    if redirect.scheme is not None or redirect.port is not None:
        return  # another scheme or port is another listener (the HTTPS redirect)
    if redirect.path is None or _path_matches(matches, redirect.path):
        yield at(doc, (*base, "redirect"), "MESH018",
                 f"rule '{name}' redirects to a request it matches again: a redirect loop")


def _check_gateways(policy: MeshPolicy) -> Iterator[Diagnostic]:
    services, gateways = _services(policy), _gateways(policy)
    for loc in policy.gateways:
        gateway, doc = loc.obj, loc.doc
        rules_path: Path = ("spec", "rules")
        yield from _duplicate_rule_names(doc, rules_path, gateway.spec.rules)
        yield from _check_reachability(doc, rules_path, gateway.spec.rules, warn_no_catch_all=False)
        for i, rule in enumerate(gateway.spec.rules):
            base = (*rules_path, i)
            yield from _check_matches(doc, base, rule.match, services, gateways)
            if _action_count(rule) != 1:
                yield at(doc, base, "MESH024",
                         f"rule '{rule.name}' must have exactly one of service, redirect or respond")
            if rule.service is not None and rule.service not in services:
                yield at(doc, (*base, "service"), "MESH011",
                         f"unknown service '{rule.service}'{_known(services)}")
            yield from _check_redirect_loop(doc, base, rule.name, rule.redirect, rule.match, same_hosts=(None,))


def _check_access_policies(policy: MeshPolicy) -> Iterator[Diagnostic]:
    services, gateways = _services(policy), _gateways(policy)
    for loc in policy.access_policies:
        access, doc = loc.obj, loc.doc
        if access.spec.service not in services:
            yield at(doc, ("spec", "service"), "MESH011",
                     f"unknown service '{access.spec.service}'{_known(services)}")
        for i, rule in enumerate(access.spec.rules):
            for j, source in enumerate(rule.from_ or ()):
                yield from _check_source(doc, ("spec", "rules", i, "from", j), source, services, gateways)


def _check_ports(policy: MeshPolicy) -> Iterator[Diagnostic]:
    owners: dict[int, list[tuple[str, Document, Path]]] = defaultdict(list)
    for gw in policy.gateways:
        if gw.obj.spec.port is not None:
            owners[gw.obj.spec.port].append((f"gateway '{gw.obj.metadata.name}'", gw.doc, ("spec", "port")))
        seen_ports: set[int] = set()  # a gateway's listeners may share a port (by host)
        for i, listener in enumerate(gw.obj.spec.listeners or ()):
            if listener.port not in seen_ports:
                seen_ports.add(listener.port)
                owners[listener.port].append((f"gateway '{gw.obj.metadata.name}'", gw.doc,
                                              ("spec", "listeners", i, "port")))
    for svc in policy.services:
        for i, version in enumerate(svc.obj.spec.versions):
            for j, endpoint in enumerate(version.endpoints or ()):
                host, _, port_text = endpoint.rpartition(":")
                if host in ("127.0.0.1", "localhost"):
                    owners[int(port_text)].append(
                        (f"endpoint of {svc.obj.metadata.name}/{version.name}", svc.doc,
                         ("spec", "versions", i, "endpoints", j)))
    for port, users in sorted(owners.items()):
        gateways_here = [u for u in users if u[0].startswith("gateway")]
        if len(users) > 1 and gateways_here:
            for name, doc, path in users[1:]:
                yield at(doc, path, "MESH020",
                         f"port {port} of {name} is already used by {users[0][0]}")

