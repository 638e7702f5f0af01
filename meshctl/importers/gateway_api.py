"""Gateway API objects -> meshctl documents.

HTTPRoute and GRPCRoute with a Service parent (GAMMA: the mesh route of that service) or a
Gateway parent (gateway rules; what a gateway rule cannot hold goes into the service's Route
as rules for the caller `gateway/<name>`), and Gateway listeners. All routes of one parent are
merged as the Gateway API merges them: every match becomes one rule, ordered by the API's
precedence (exact path, longest prefix, method, most headers, most query parameters; then the
older route, then namespace/name, then rule order), so meshctl's first match picks what the
Gateway API would. Relative backend weights are rescaled to 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshctl.importers.common import Reading, convert_guarded, duration, rescale, unique_name
from meshctl.importers.emit import OutDoc, Output
from meshctl.importers.kube import Kube, meshctl_name
from meshctl.importers.read import Malformed, Src, integer, mapping, number, sequence, string
from meshctl.importers.report import ImportReport
from meshctl.yamlio import Path

REDIRECT_CODES = {301, 302, 303, 307, 308}


@dataclass
class Entry:
    """One match of one rule, with everything needed to order it and to write it."""

    key: tuple[Any, ...]
    rule: dict[str, Any]
    origin: str
    source: str  # "HTTPRoute reviews (file:line)"
    service: str  # the backend service a gateway rule forwards to ("" for a redirect)


class GatewayApiImport:
    def __init__(self, objects: list[Src], kube: Kube, report: ImportReport) -> None:
        self.objects = objects
        self.kube = kube
        self.report = report
        self.out = Output()
        self.mesh_entries: dict[str, list[Entry]] = {}
        self.gateway_entries: dict[str, list[Entry]] = {}
        self.grpc: set[str] = set()

    def run(self) -> Output:
        self.out.mesh = OutDoc("Mesh", "mesh", {"defaults": {"timeout": "none"}},
                               ["the Gateway API sets no request timeout unless a route asks for one"])
        routes = [s for s in self.objects if s.kind in ("HTTPRoute", "GRPCRoute")]
        routes.sort(key=lambda s: (str(s.metadata.get("creationTimestamp", "")), s.namespace, s.name))
        for order, src in enumerate(routes):
            self._guarded(src, lambda s, r, o=order: self._route(s, r, o))
        for src in self.objects:
            if src.kind == "Gateway":
                self._guarded(src, self._gateway)
        for svc in list(self.kube.services):
            app, _ = self.kube.target(svc)
            if self.kube.versions(app):
                self.out.service(app, self.kube)
        self._mesh_routes()
        for name in self.grpc:
            self.out.service(name, self.kube).spec["protocol"] = "grpc"
        for doc in self.out.services.values():
            if not doc.spec.get("versions"):
                self.out.version(doc.name, "v1", self.kube)
            doc.spec = {k: doc.spec[k] for k in ("protocol", "versions", "trafficPolicy") if k in doc.spec}
        return self.out

    def _guarded(self, src: Src, step: Any) -> None:
        convert_guarded(src, self.report, step)

    # --- routes ---------------------------------------------------------------------------

    def _route(self, src: Src, r: Reading, order: int) -> None:
        spec = src.spec
        grpc = src.kind == "GRPCRoute"
        parents = []
        for i, ref in enumerate(sequence(spec.get("parentRefs"), ("spec", "parentRefs"))):
            ref = mapping(ref, ("spec", "parentRefs", i))
            kind = str(ref.get("kind", "Gateway"))
            name = string(ref.get("name"), ("spec", "parentRefs", i, "name"))
            if kind not in ("Service", "Gateway"):
                r.drop(("spec", "parentRefs", i), f"a {kind} parent is not imported")
                continue
            parents.append((kind, name, ref.get("sectionName"), i))
            r.rest(ref, ("spec", "parentRefs", i), {"kind", "name", "group", "sectionName", "port"},
                   ignored={"namespace"})
        if not parents:
            raise Malformed(("spec", "parentRefs"), "needs a Service or Gateway parent")
        hostnames = [str(h).lower() for h in sequence(spec.get("hostnames"), ("spec", "hostnames"))]
        r.rest(spec, ("spec",), {"parentRefs", "rules", "hostnames"})
        for kind, name, section, _ in parents:
            if kind == "Service":
                service, _version = self.kube.target(name)
                self.out.service(service, self.kube, f"{src.label} ({src.where})")
                if grpc:
                    self.grpc.add(service)
                entries = self._entries(src, r, order, service, None, grpc)
                self.mesh_entries.setdefault(service, []).extend(entries)
            else:
                gateway = meshctl_name(name)
                for entry in self._entries(src, r, order, None, gateway, grpc):
                    if hostnames:
                        entry.rule["hosts"] = hostnames
                    if section:
                        entry.rule["listeners"] = [meshctl_name(str(section))]
                    self.gateway_entries.setdefault(gateway, []).append(entry)

    def _entries(self, src: Src, r: Reading, order: int, service: str | None, gateway: str | None,
                 grpc: bool) -> list[Entry]:
        out = []
        for i, rule in enumerate(sequence(src.spec.get("rules"), ("spec", "rules"))):
            rp: Path = ("spec", "rules", i)
            rule = mapping(rule, rp)
            action = self._action(r, rule, rp, service, grpc)
            matches = sequence(rule.get("matches"), (*rp, "matches")) or [{}]
            base = meshctl_name(str(rule.get("name") or f"{src.name}-{i}"))
            for j, m in enumerate(matches):
                mp: Path = (*rp, "matches", j)
                converted, key = (self._grpc_match if grpc else self._http_match)(r, mapping(m, mp), mp)
                entry_rule: dict[str, Any] = {"name": base if len(matches) == 1 else f"{base}-{j}"}
                if converted:
                    entry_rule["match"] = [converted]
                entry_rule.update(action)
                target = action.get("backends", [{}])[0].get("service", service or "") if "backends" in action else ""
                out.append(Entry((*key, order, src.namespace, src.name, i, j), entry_rule, r.line(mp),
                                 f"{src.label} ({src.where})", target))
            r.rest(rule, rp, {"matches", "backendRefs", "filters", "timeouts", "name", "retry"},
                   {"sessionPersistence": "use a Route's sticky (cookie) instead"})
        return out

    def _http_match(self, r: Reading, m: dict[str, Any], mp: Path) -> tuple[dict[str, Any], tuple[Any, ...]]:
        out: dict[str, Any] = {}
        path = mapping(m.get("path"), (*mp, "path"))
        kind = str(path.get("type", "PathPrefix"))
        value = str(path.get("value", "/"))
        if kind == "Exact":
            out["path"], rank = {"exact": value}, 0
        elif kind == "PathPrefix":
            rank = 1
            if value != "/":
                out["path"] = {"segmentPrefix": value}
        elif kind == "RegularExpression":
            out["path"], rank = {"regex": value}, 2
        else:
            raise Malformed((*mp, "path", "type"), f"unknown path match type {kind}")
        if "method" in m:
            out["method"] = [string(m["method"], (*mp, "method")).upper()]
        for field, key in (("headers", "headers"), ("queryParams", "query")):
            conds = {}
            for k, cond in enumerate(sequence(m.get(field), (*mp, field))):
                cond = mapping(cond, (*mp, field, k))
                ctype = str(cond.get("type", "Exact"))
                name = string(cond.get("name"), (*mp, field, k, "name"))
                conds[name] = {"regex" if ctype == "RegularExpression" else "exact": str(cond.get("value", ""))}
            if conds:
                out[key] = conds
        r.rest(m, mp, {"path", "method", "headers", "queryParams"})
        precedence = (rank, -len(value), "method" not in m, -len(out.get("headers", {})), -len(out.get("query", {})))
        return out, precedence

    def _grpc_match(self, r: Reading, m: dict[str, Any], mp: Path) -> tuple[dict[str, Any], tuple[Any, ...]]:
        out: dict[str, Any] = {}
        method = mapping(m.get("method"), (*mp, "method"))
        svc, name = method.get("service"), method.get("method")
        if str(method.get("type", "Exact")) == "RegularExpression":
            out["path"] = {"regex": f"/{svc or '[^/]+'}/{name or '[^/]+'}"}
        elif svc and name:
            out["path"] = {"exact": f"/{svc}/{name}"}
        elif svc:
            out["path"] = {"prefix": f"/{svc}/"}
        elif name:
            out["path"] = {"regex": f"/[^/]+/{name}"}
        conds = {}
        for k, cond in enumerate(sequence(m.get("headers"), (*mp, "headers"))):
            cond = mapping(cond, (*mp, "headers", k))
            ctype = str(cond.get("type", "Exact"))
            conds[string(cond.get("name"), (*mp, "headers", k, "name"))] = {
                "regex" if ctype == "RegularExpression" else "exact": str(cond.get("value", ""))}
        if conds:
            out["headers"] = conds
        r.rest(m, mp, {"method", "headers"})
        precedence = (-len(str(svc or "")), -len(str(name or "")), -len(conds), 0, 0)
        return out, precedence

    def _action(self, r: Reading, rule: dict[str, Any], rp: Path, service: str | None, grpc: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        headers: dict[str, Any] = {}
        for k, f in enumerate(sequence(rule.get("filters"), (*rp, "filters"))):
            fp: Path = (*rp, "filters", k)
            f = mapping(f, fp)
            ftype = str(f.get("type"))
            if ftype in ("RequestHeaderModifier", "ResponseHeaderModifier"):
                side = "request" if ftype.startswith("Request") else "response"
                key = "requestHeaderModifier" if side == "request" else "responseHeaderModifier"
                headers[side] = _header_modifier(mapping(f.get(key), (*fp, key)), (*fp, key))
            elif ftype == "RequestRedirect":
                out["redirect"] = self._redirect(r, mapping(f.get("requestRedirect"), (*fp, "requestRedirect")),
                                                 (*fp, "requestRedirect"))
            elif ftype == "URLRewrite":
                out["rewrite"] = self._rewrite(r, mapping(f.get("urlRewrite"), (*fp, "urlRewrite")),
                                               (*fp, "urlRewrite"))
            elif ftype == "RequestMirror":
                mirror = mapping(f.get("requestMirror"), (*fp, "requestMirror"))
                ref = mapping(mirror.get("backendRef"), (*fp, "requestMirror", "backendRef"))
                target, version = self.kube.target(string(ref.get("name"), (*fp, "requestMirror", "backendRef")))
                self.out.service(target, self.kube)
                entry: dict[str, Any] = {"service": target}
                if version:
                    entry["version"] = version
                    self.out.version(target, version, self.kube)
                if "percent" in mirror:
                    entry["percent"] = number(mirror["percent"], (*fp, "requestMirror", "percent"))
                elif "fraction" in mirror:
                    fr = mapping(mirror["fraction"], (*fp, "requestMirror", "fraction"))
                    entry["percent"] = round(100 * number(fr.get("numerator", 0), fp)
                                             / number(fr.get("denominator", 100), fp), 3)
                out["mirror"] = entry
            else:
                r.drop(fp, f"filter {ftype} has no meshctl equivalent")
        if headers:
            out["headers"] = headers
        if "redirect" in out:
            for key in ("rewrite", "mirror"):
                out.pop(key, None)
            if "backendRefs" in rule:
                r.drop((*rp, "backendRefs"), "a redirect answers: the backends are not used")
            return out
        refs = sequence(rule.get("backendRefs"), (*rp, "backendRefs"))
        if not refs:
            out["respond"] = {"status": 500 if not grpc else 200, "body": "no backends"}
            r.drop(rp, "a rule without backendRefs answers an error", kind="ignored")
            return out
        backends, weights = [], []
        for k, ref in enumerate(refs):
            bp: Path = (*rp, "backendRefs", k)
            ref = mapping(ref, bp)
            target, version = self.kube.target(string(ref.get("name"), (*bp, "name")))
            self.out.service(target, self.kube)
            backend: dict[str, Any] = {}
            if target != service:
                backend["service"] = target
            if version:
                backend["version"] = version
                self.out.version(target, version, self.kube)
            bh: dict[str, Any] = {}
            for n, f in enumerate(sequence(ref.get("filters"), (*bp, "filters"))):
                f = mapping(f, (*bp, "filters", n))
                ftype = str(f.get("type"))
                if ftype in ("RequestHeaderModifier", "ResponseHeaderModifier"):
                    side = "request" if ftype.startswith("Request") else "response"
                    key = "requestHeaderModifier" if side == "request" else "responseHeaderModifier"
                    bh[side] = _header_modifier(mapping(f.get(key), (*bp, "filters", n, key)), (*bp, "filters", n))
                else:
                    r.drop((*bp, "filters", n), f"backend filter {ftype} has no meshctl equivalent")
            if bh:
                backend["headers"] = bh
            weights.append(integer(ref.get("weight", 1), (*bp, "weight")))
            backends.append(backend)
            r.rest(ref, bp, {"name", "weight", "filters", "port"}, ignored={"kind", "group", "namespace"})
        if sum(weights) == 0:
            out["respond"] = {"status": 500, "body": "all backend weights are 0"}
            return out
        if len(backends) > 1:
            scaled = rescale(weights)
            for backend, weight in zip(backends, scaled, strict=True):
                backend["weight"] = weight
            if scaled != weights:
                r.drop((*rp, "backendRefs"), f"weights {weights} rescaled to {scaled}", kind="ignored")
            backends = [b for b in backends if b["weight"] > 0] or backends
        if len(backends) == 1:
            backends[0].pop("weight", None)
        out["backends"] = backends
        timeouts = mapping(rule.get("timeouts"), (*rp, "timeouts"))
        out["timeout"] = duration(timeouts["request"], (*rp, "timeouts", "request")) \
            if "request" in timeouts and timeouts["request"] not in ("0s", "0") else "none"
        r.rest(timeouts, (*rp, "timeouts"), {"request"},
               {"backendRequest": "a per-try timeout needs retries; set retries.perTryTimeout"})
        if "retry" in rule:
            retry = mapping(rule["retry"], (*rp, "retry"))
            retries: dict[str, Any] = {"attempts": min(10, integer(retry.get("attempts", 2), (*rp, "retry")))}
            codes = [str(integer(c, (*rp, "retry", "codes"))) for c in sequence(retry.get("codes"), (*rp, "retry"))]
            if codes:
                retries["on"] = codes
            if "backoff" in retry:
                retries["backoff"] = {"base": duration(retry["backoff"], (*rp, "retry", "backoff"))}
            out["retries"] = retries
        return out

    def _redirect(self, r: Reading, red: dict[str, Any], path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "scheme" in red:
            out["scheme"] = string(red["scheme"], (*path, "scheme")).lower()
        if "hostname" in red:
            out["host"] = string(red["hostname"], (*path, "hostname"))
        if "port" in red:
            out["port"] = integer(red["port"], (*path, "port"))
        rp = mapping(red.get("path"), (*path, "path"))
        if rp.get("type") == "ReplaceFullPath":
            out["path"] = string(rp.get("replaceFullPath"), (*path, "path", "replaceFullPath"))
        elif rp:
            r.drop((*path, "path"), "a redirect replaces the whole path only (ReplaceFullPath)")
        code = red.get("statusCode", 302)
        out["status"] = code if code in REDIRECT_CODES else 302
        r.rest(red, path, {"scheme", "hostname", "port", "path", "statusCode"})
        return out

    def _rewrite(self, r: Reading, rw: dict[str, Any], path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "hostname" in rw:
            out["host"] = string(rw["hostname"], (*path, "hostname"))
        rp = mapping(rw.get("path"), (*path, "path"))
        if rp.get("type") == "ReplaceFullPath":
            out["fullPath"] = string(rp.get("replaceFullPath"), (*path, "path", "replaceFullPath"))
        elif rp.get("type") == "ReplacePrefixMatch":
            out["pathPrefix"] = string(rp.get("replacePrefixMatch"), (*path, "path", "replacePrefixMatch"))
        r.rest(rw, path, {"hostname", "path"})
        return out

    def _mesh_routes(self) -> None:
        for service, entries in sorted(self.mesh_entries.items()):
            route = OutDoc("Route", service, {"service": service, "rules": []})
            self._emit(route, entries)
            self.out.routes[service] = route
        # What a gateway rule cannot hold (a split, a rewrite, a timeout...) goes to the Route of
        # the service it forwards to, for the caller gateway/<name>, ahead of its mesh rules.
        for gateway, entries in sorted(self.gateway_entries.items()):
            doc = self.out.gateways.get(gateway)
            if doc is None:
                continue
            rules = []
            taken: set[str] = set()
            for entry in sorted(entries, key=lambda e: e.key):
                rule = entry.rule
                name = unique_name(rule["name"], taken)
                gw_rule: dict[str, Any] = {"name": name}
                for key in ("match", "hosts", "listeners", "redirect", "headers"):
                    if key in rule:
                        gw_rule[key] = rule[key]
                if "redirect" not in rule and "respond" not in rule:
                    gw_rule["service"] = entry.service
                    self._gateway_route_rule(gateway, name, entry)
                elif "respond" in rule:
                    gw_rule["respond"] = rule["respond"]
                doc.rule_origins[name] = entry.origin
                rules.append(gw_rule)
            doc.spec["rules"] = rules

    def _gateway_route_rule(self, gateway: str, name: str, entry: Entry) -> None:
        rule = {k: v for k, v in entry.rule.items() if k not in ("hosts", "listeners", "headers")}
        backends = rule.get("backends", [])
        service = entry.service
        for b in backends:
            if b.get("service") == service:
                b.pop("service")
        plain = backends == [{}] and set(rule) <= {"name", "match", "backends", "timeout"}
        route = self.out.routes.get(service)
        if plain and route is None:
            return
        if route is None:
            route = OutDoc("Route", service, {"service": service, "rules": [
                {"name": "default", "backends": [{}], "timeout": "none"}]})
            self.out.routes[service] = route
        rule["name"] = unique_name(f"{gateway}-{name}", {r["name"] for r in route.spec["rules"]})
        matches = rule.get("match") or [{}]
        rule["match"] = [{**m, "from": [f"gateway/{gateway}"]} for m in matches]
        route.rule_origins[rule["name"]] = entry.origin
        route.spec["rules"].insert(sum(1 for r in route.spec["rules"] if _from_gateway(r)), rule)

    def _emit(self, route: OutDoc, entries: list[Entry]) -> None:
        taken: set[str] = set()
        for entry in sorted(entries, key=lambda e: e.key):
            entry.rule["name"] = unique_name(entry.rule["name"], taken)
            route.rule_origins[entry.rule["name"]] = entry.origin
            route.spec["rules"].append(entry.rule)
        route.origins = sorted({e.source for e in entries})

    # --- gateways -------------------------------------------------------------------------

    def _gateway(self, src: Src, r: Reading) -> None:
        spec = src.spec
        listeners = []
        for i, listener in enumerate(sequence(spec.get("listeners"), ("spec", "listeners"))):
            lp: Path = ("spec", "listeners", i)
            listener = mapping(listener, lp)
            protocol = str(listener.get("protocol", "HTTP")).upper()
            if protocol != "HTTP":
                r.drop(lp, f"{protocol} listener: certificates come from Kubernetes secrets; add an https "
                       "listener with certificate files")
                continue
            out: dict[str, Any] = {"name": meshctl_name(string(listener.get("name"), (*lp, "name"))),
                                   "port": integer(listener.get("port"), (*lp, "port"))}
            if "hostname" in listener:
                out["hosts"] = [str(listener["hostname"]).lower()]
            listeners.append(out)
            r.rest(listener, lp, {"name", "port", "protocol", "hostname"}, ignored={"allowedRoutes"})
        r.rest(spec, ("spec",), {"listeners"}, ignored={"gatewayClassName", "infrastructure", "addresses"})
        name = meshctl_name(src.name)
        if not listeners or name not in self.gateway_entries:
            r.drop(("spec",), "gateway not imported: " + ("no HTTP listener" if not listeners
                   else "no route names it as parent"))
            return
        doc = OutDoc("Gateway", name, {}, [f"{src.label} ({src.where})"])
        if len(listeners) == 1 and "hosts" not in listeners[0] and not any(
                "listeners" in e.rule for e in self.gateway_entries[name]):
            doc.spec["port"] = listeners[0]["port"]
        else:
            doc.spec["listeners"] = listeners
        self.out.gateways[name] = doc


def _from_gateway(rule: dict[str, Any]) -> bool:
    return any(str(f).startswith("gateway/") for m in rule.get("match", []) for f in m.get("from", []))


def _header_modifier(mod: dict[str, Any], path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for op in ("set", "add"):
        items = sequence(mod.get(op), (*path, op))
        if items:
            out[op] = {string(mapping(h, (*path, op, k)).get("name"), (*path, op, k)): str(h.get("value", ""))
                       for k, h in enumerate(items)}
    if "remove" in mod:
        out["remove"] = [str(h) for h in sequence(mod["remove"], (*path, "remove"))]
    return out


def import_gateway_api(objects: list[Src], kube: Kube, report: ImportReport) -> Output:
    return GatewayApiImport(objects, kube, report).run()
