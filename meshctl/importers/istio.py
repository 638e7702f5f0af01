"""Istio networking and security objects -> meshctl documents.

VirtualService (mesh routes, and gateway routes as Gateway rules plus `from: gateway/<name>`
route rules), DestinationRule (versions, traffic policy), Gateway (listeners), ServiceEntry
(static endpoints), PeerAuthentication (mesh mTLS), AuthorizationPolicy (access policy). What
Istio does by default and meshctl does not is written out: no route timeout (`timeout: none`),
PERMISSIVE mTLS, ALLOW_ANY outbound traffic.
"""

from __future__ import annotations

from typing import Any

from meshctl.importers.common import Reading, convert_guarded, duration, header_ops, rescale, unique_name
from meshctl.importers.emit import OutDoc, Output
from meshctl.importers.kube import Kube, meshctl_name, short_host
from meshctl.importers.read import Malformed, Src, integer, mapping, number, sequence, string
from meshctl.importers.report import ImportReport
from meshctl.yamlio import Path

RETRY_ON = {"5xx", "gateway-error", "connect-failure", "reset", "refused-stream", "retriable-4xx"}
REDIRECT_CODES = {301, 302, 303, 307, 308}
MTLS = {"STRICT": "strict", "PERMISSIVE": "permissive", "DISABLE": "disabled", "UNSET": "permissive"}
LB = {"ROUND_ROBIN": "round-robin", "LEAST_REQUEST": "least-request", "LEAST_CONN": "least-request",
      "RANDOM": "random"}


class IstioImport:
    def __init__(self, objects: list[Src], kube: Kube, report: ImportReport) -> None:
        self.objects = objects
        self.kube = kube
        self.report = report
        self.out = Output()
        self.subsets: dict[str, dict[str, str]] = {}  # service -> subset -> version
        self.gateway_rules: dict[str, list[tuple[dict[str, Any], str]]] = {}
        self.gateway_route_rules: dict[str, list[tuple[dict[str, Any], str]]] = {}
        self.route_owner: dict[str, Src] = {}

    def run(self) -> Output:
        self.out.mesh = OutDoc(
            "Mesh", "mesh",
            {"mtls": "permissive", "outboundPolicy": "allow-any", "defaults": {"timeout": "none"}},
            ["Istio's defaults: PERMISSIVE mTLS, ALLOW_ANY outbound traffic, no route timeout"])
        for kind, step in (("DestinationRule", self._destination_rule), ("ServiceEntry", self._service_entry),
                           ("VirtualService", self._virtual_service), ("Gateway", self._gateway),
                           ("PeerAuthentication", self._peer_authentication),
                           ("AuthorizationPolicy", self._authorization_policy)):
            for src in self.objects:
                if src.kind == kind and src.group.endswith("istio.io"):
                    self._guarded(src, step)
        for svc in list(self.kube.services):
            app, _ = self.kube.target(svc)
            if self.kube.versions(app):
                self.out.service(app, self.kube)
        self._finish_routes()
        for doc in self.out.services.values():
            if not doc.spec.get("versions"):
                self.out.version(doc.name, "v1", self.kube)
        return self.out

    def _guarded(self, src: Src, step: Any) -> None:
        convert_guarded(src, self.report, step)

    # --- services and versions ------------------------------------------------------------

    def _host(self, host: Any, path: Path, src: Src) -> str:
        return meshctl_name(short_host(string(host, path), src.namespace))

    def _version(self, service: str, subset: str | None) -> str | None:
        if subset is None:
            return None
        return self.subsets.get(service, {}).get(subset, meshctl_name(subset))

    def _destination_rule(self, src: Src, r: Reading) -> None:
        spec = src.spec
        host = self._host(spec.get("host"), ("spec", "host"), src)
        if host in self.subsets:
            raise Malformed(("spec", "host"), f"host {host} already has a DestinationRule: "
                            "Istio's merge of several is not defined here; merge them into one")
        svc = self.out.service(host, self.kube, f"{src.label} ({src.where})")
        self.subsets[host] = {}
        for i, subset in enumerate(sequence(spec.get("subsets"), ("spec", "subsets"))):
            path: Path = ("spec", "subsets", i)
            subset = mapping(subset, path)
            name = string(subset.get("name"), (*path, "name"))
            labels = {str(k): str(v) for k, v in mapping(subset.get("labels"), (*path, "labels")).items()}
            version = meshctl_name(labels.get("version", name))
            self.subsets[host][name] = version
            self.out.version(host, version, self.kube, labels)
            r.rest(subset, path, {"name", "labels"}, {"trafficPolicy": "per-version traffic policy is not supported"})
        policy = mapping(spec.get("trafficPolicy"), ("spec", "trafficPolicy"))
        if policy:
            tp = self._traffic_policy(policy, ("spec", "trafficPolicy"), r)
            if tp:
                svc.spec["trafficPolicy"] = tp
        r.rest(spec, ("spec",), {"host", "subsets", "trafficPolicy"}, {"exportTo": "meshctl has no namespaces"})

    def _traffic_policy(self, policy: dict[str, Any], path: Path, r: Reading) -> dict[str, Any]:
        out: dict[str, Any] = {}
        lb = mapping(policy.get("loadBalancer"), (*path, "loadBalancer"))
        if "simple" in lb:
            simple = lb["simple"]
            if simple in LB:
                out["loadBalancer"] = LB[simple]
            else:
                r.drop((*path, "loadBalancer", "simple"), f"{simple} has no meshctl load balancer")
        if "consistentHash" in lb:
            ch = mapping(lb["consistentHash"], (*path, "loadBalancer", "consistentHash"))
            if "httpHeaderName" in ch:
                out["loadBalancer"] = {"hash": {"header": string(ch["httpHeaderName"], (*path, "loadBalancer"))}}
            elif "httpCookie" in ch:
                cookie = mapping(ch["httpCookie"], (*path, "loadBalancer", "consistentHash", "httpCookie"))
                out["loadBalancer"] = {"hash": {"cookie": {
                    "name": string(cookie.get("name"), (*path, "loadBalancer", "consistentHash", "httpCookie")),
                    "ttl": duration(cookie.get("ttl", "0s"), (*path, "loadBalancer", "consistentHash")),
                }}}
            r.rest(ch, (*path, "loadBalancer", "consistentHash"), {"httpHeaderName", "httpCookie"})
        r.rest(lb, (*path, "loadBalancer"), {"simple", "consistentHash"})
        pool = mapping(policy.get("connectionPool"), (*path, "connectionPool"))
        cp: dict[str, Any] = {}
        tcp = mapping(pool.get("tcp"), (*path, "connectionPool", "tcp"))
        http = mapping(pool.get("http"), (*path, "connectionPool", "http"))
        if "maxConnections" in tcp:
            cp["maxConnections"] = integer(tcp["maxConnections"], (*path, "connectionPool", "tcp", "maxConnections"))
        if "http1MaxPendingRequests" in http:
            cp["maxPendingRequests"] = integer(http["http1MaxPendingRequests"], (*path, "connectionPool", "http"))
        if "http2MaxRequests" in http:
            cp["maxRequests"] = integer(http["http2MaxRequests"], (*path, "connectionPool", "http"))
        r.rest(tcp, (*path, "connectionPool", "tcp"), {"maxConnections"})
        r.rest(http, (*path, "connectionPool", "http"), {"http1MaxPendingRequests", "http2MaxRequests"})
        r.rest(pool, (*path, "connectionPool"), {"tcp", "http"})
        if cp:
            out["connectionPool"] = cp
        od_in = mapping(policy.get("outlierDetection"), (*path, "outlierDetection"))
        if od_in:
            od: dict[str, Any] = {}
            odp = (*path, "outlierDetection")
            for key in ("consecutive5xxErrors", "consecutiveErrors", "consecutiveGatewayErrors"):
                if key in od_in:
                    od["consecutive5xx"] = max(1, integer(od_in[key], (*odp, key)))
                    break
            if "interval" in od_in:
                od["interval"] = duration(od_in["interval"], (*odp, "interval"))
            if "baseEjectionTime" in od_in:
                od["baseEjectionTime"] = duration(od_in["baseEjectionTime"], (*odp, "baseEjectionTime"))
            if "maxEjectionPercent" in od_in:
                od["maxEjectionPercent"] = number(od_in["maxEjectionPercent"], (*odp, "maxEjectionPercent"))
            r.rest(od_in, odp, {"consecutive5xxErrors", "consecutiveErrors", "consecutiveGatewayErrors",
                                "interval", "baseEjectionTime", "maxEjectionPercent"})
            out["outlierDetection"] = od
        r.rest(policy, path, {"loadBalancer", "connectionPool", "outlierDetection"},
               {"tls": "mTLS is mesh-wide in meshctl (Mesh.spec.mtls)"})
        return out

    def _service_entry(self, src: Src, r: Reading) -> None:
        spec = src.spec
        ports = sequence(spec.get("ports"), ("spec", "ports"))
        port = integer(mapping(ports[0], ("spec", "ports", 0)).get("number"), ("spec", "ports", 0, "number")) \
            if ports else 80
        for i, host in enumerate(sequence(spec.get("hosts"), ("spec", "hosts"))):
            host = string(host, ("spec", "hosts", i))
            if host.startswith("*"):
                r.drop(("spec", "hosts", i), "wildcard hosts: meshctl services are named")
                continue
            name = meshctl_name(host)
            doc = OutDoc("Service", name, {"versions": [{"name": "v1", "endpoints": [f"{host}:{port}"]}]},
                         [f"{src.label} ({src.where})"])
            self.out.services[name] = doc
        for i, p in enumerate(ports):
            protocol = str(mapping(p, ("spec", "ports", i)).get("protocol", "HTTP")).upper()
            if protocol not in ("HTTP", "HTTP2", "GRPC"):
                r.drop(("spec", "ports", i, "protocol"), f"{protocol}: meshctl calls static endpoints over plain HTTP")
        if len(ports) > 1:
            r.drop(("spec", "ports", 1), "meshctl uses the first port only")
        r.rest(spec, ("spec",), {"hosts", "ports"}, {"endpoints": "endpoints are the hosts themselves"},
               ignored={"location", "resolution", "exportTo"})

    # --- virtual services -----------------------------------------------------------------

    def _virtual_service(self, src: Src, r: Reading) -> None:
        spec = src.spec
        hosts = [string(h, ("spec", "hosts", i)) for i, h in enumerate(sequence(spec.get("hosts"), ("spec", "hosts")))]
        gateways = [string(g, ("spec", "gateways", i)).split("/")[-1]
                    for i, g in enumerate(sequence(spec.get("gateways"), ("spec", "gateways")))]
        mesh = not gateways or "mesh" in gateways
        r.rest(spec, ("spec",), {"hosts", "gateways", "http"},
               {"tcp": "TCP routes are not imported", "tls": "TLS routes are not imported",
                "exportTo": "meshctl has no namespaces"})
        http = sequence(spec.get("http"), ("spec", "http"))
        if mesh:
            for i, host in enumerate(hosts):
                if host == "*" or host.startswith("*."):
                    r.drop(("spec", "hosts", i), "a wildcard host names no single service")
                    continue
                self._mesh_routes(src, r, self._host(host, ("spec", "hosts", i), src), http)
        for gw in (g for g in gateways if g != "mesh"):
            self._gateway_routes(src, r, gw, hosts, http)

    def _mesh_routes(self, src: Src, r: Reading, service: str, http: list[Any]) -> None:
        self.out.service(service, self.kube)
        if service in self.route_owner:
            other = self.route_owner[service]
            raise Malformed(("spec", "hosts"), f"host {service} is also routed by {other.label} ({other.where}): "
                            "Istio's result for several VirtualServices of one host is undefined "
                            "for sidecars; merge them into one")
        self.route_owner[service] = src
        route = OutDoc("Route", service, {"service": service, "rules": []}, [f"{src.label} ({src.where})"])
        taken = {rule["name"] for rule in route.spec["rules"]}
        for i, entry in enumerate(http):
            rule = self._http_route(r, service, mapping(entry, ("spec", "http", i)), ("spec", "http", i), taken,
                                    f"{src.name}-{i}", gateway=None)
            if rule is not None:
                route.spec["rules"].append(rule)
                route.rule_origins[rule["name"]] = r.line(("spec", "http", i))
        if route.spec["rules"]:
            self.out.routes[service] = route

    def _gateway_routes(self, src: Src, r: Reading, gateway: str, hosts: list[str], http: list[Any]) -> None:
        rules = self.gateway_rules.setdefault(gateway, [])
        names = {rule["name"] for rule, _ in rules}
        gw_hosts = [h.lower() for h in hosts if h != "*"]
        for i, entry in enumerate(http):
            path: Path = ("spec", "http", i)
            entry = mapping(entry, path)
            routes = sequence(entry.get("route"), (*path, "route"))
            if routes:
                first = mapping(mapping(routes[0], (*path, "route", 0)).get("destination"), (*path, "route", 0))
                service = self._host(first.get("host"), (*path, "route", 0, "destination", "host"), src)
                route_rules = self.gateway_route_rules.setdefault(service, [])
                taken = {rr["name"] for rr, _ in route_rules}
                rule = self._http_route(r, service, entry, path, taken, f"{gateway}-{src.name}-{i}", gateway=gateway)
                if rule is None:
                    continue
                gw_rule: dict[str, Any] = {"name": unique_name(rule["name"], names), "service": service}
                if "match" in rule:
                    gw_rule["match"] = [{k: v for k, v in m.items() if k != "from"} for m in rule["match"]]
                if "headers" in rule:
                    gw_rule["headers"] = rule.pop("headers")
                route_rules.append((rule, r.line(path)))
            else:
                rule = self._http_route(r, "gateway", entry, path, set(names), f"{gateway}-{src.name}-{i}",
                                        gateway=gateway)
                if rule is None:
                    continue
                gw_rule = {k: v for k, v in rule.items() if k in ("name", "match", "redirect", "respond", "headers")}
                gw_rule["name"] = unique_name(rule["name"], names)
                if "match" in gw_rule:
                    gw_rule["match"] = [{k: v for k, v in m.items() if k != "from"} for m in gw_rule["match"]]
            if gw_hosts:
                gw_rule["hosts"] = gw_hosts
            rules.append((gw_rule, r.line(path)))

    def _finish_routes(self) -> None:
        """Gateway traffic follows the gateway's VirtualService, not the mesh one: its rules go first
        in the service's Route, for callers `gateway/<name>` only."""
        for service, rules in self.gateway_route_rules.items():
            route = self.out.routes.get(service)
            if route is None:
                rules = [(rule, origin) for rule, origin in rules if not _plain(rule)]
                if not rules:
                    continue  # the service's default route does what the gateway's asks
                # Mesh callers keep Istio's default for a host without a VirtualService.
                route = OutDoc("Route", service, {"service": service, "rules": [
                    {"name": "default", "backends": [{}], "timeout": "none"}]})
                self.out.routes[service] = route
            taken = {rule["name"] for rule in route.spec["rules"]}
            front = []
            for rule, origin in rules:
                rule["name"] = unique_name(rule["name"], taken)
                route.rule_origins[rule["name"]] = origin
                front.append(rule)
            route.spec["rules"] = front + route.spec["rules"]

    def _http_route(self, r: Reading, service: str, entry: dict[str, Any], path: Path, taken: set[str],
                    fallback: str, gateway: str | None) -> dict[str, Any] | None:
        name = unique_name(meshctl_name(str(entry.get("name") or fallback)), taken)
        rule: dict[str, Any] = {"name": name}
        matches = self._matches(r, entry, path, gateway)
        if matches is None:
            r.drop(path, "rule dropped: none of its match entries can be carried over")
            return None
        if matches:
            rule["match"] = matches
        elif gateway is not None:
            rule["match"] = [{"from": [f"gateway/{gateway}"]}]
        routes = sequence(entry.get("route"), (*path, "route"))
        if "redirect" in entry:
            rule["redirect"] = self._redirect(r, mapping(entry["redirect"], (*path, "redirect")), (*path, "redirect"))
        elif "directResponse" in entry:
            dr = mapping(entry["directResponse"], (*path, "directResponse"))
            respond: dict[str, Any] = {"status": integer(dr.get("status"), (*path, "directResponse", "status"))}
            body = mapping(dr.get("body"), (*path, "directResponse", "body"))
            if "string" in body:
                respond["body"] = str(body["string"])
            r.rest(body, (*path, "directResponse", "body"), {"string"}, {"bytes": "binary bodies are not supported"})
            rule["respond"] = respond
        elif routes:
            rule["backends"] = self._backends(r, service, routes, (*path, "route"))
        else:
            r.drop(path, "rule dropped: no route, redirect or directResponse")
            return None
        if "backends" in rule:
            rule["timeout"] = duration(entry["timeout"], (*path, "timeout")) if "timeout" in entry else "none"
            if "retries" in entry:
                retries = self._retries(r, mapping(entry["retries"], (*path, "retries")), (*path, "retries"))
                if retries is not None:
                    rule["retries"] = retries
            if "fault" in entry:
                fault = self._fault(r, mapping(entry["fault"], (*path, "fault")), (*path, "fault"))
                if fault:
                    rule["fault"] = fault
            mirror = self._mirror(r, service, entry, path)
            if mirror:
                rule["mirror"] = mirror
            if "rewrite" in entry:
                rewrite = self._rewrite(r, mapping(entry["rewrite"], (*path, "rewrite")), (*path, "rewrite"))
                if rewrite:
                    rule["rewrite"] = rewrite
        else:
            for key in ("timeout", "retries", "fault", "mirror", "mirrors", "rewrite"):
                if key in entry:
                    r.drop((*path, key), "has no effect on a redirect or direct response")
        if "headers" in entry:
            headers = mapping(entry["headers"], (*path, "headers"))
            ops = {d: header_ops(mapping(headers[d], (*path, "headers", d)), (*path, "headers", d))
                   for d in ("request", "response") if d in headers}
            if any(ops.values()):
                rule["headers"] = {k: v for k, v in ops.items() if v}
        r.rest(entry, path, {"name", "match", "route", "redirect", "directResponse", "timeout", "retries", "fault",
                             "mirror", "mirrorPercentage", "mirrorPercent", "mirrors", "rewrite", "headers"},
               {"corsPolicy": "CORS is gateway policy in meshctl (Gateway.spec.cors)",
                "delegate": "delegated VirtualServices are not imported"})
        return rule

    def _matches(
        self, r: Reading, entry: dict[str, Any], path: Path, gateway: str | None
    ) -> list[dict[str, Any]] | None:
        raw = sequence(entry.get("match"), (*path, "match"))
        out: list[dict[str, Any]] = []
        for j, m in enumerate(raw):
            mp: Path = (*path, "match", j)
            m = mapping(m, mp)
            converted = self._match(r, m, mp, gateway)
            if converted is not None:
                out.append(converted)
        if raw and not out:
            return None
        return out

    def _match(self, r: Reading, m: dict[str, Any], mp: Path, gateway: str | None) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        unsupported = [k for k in m if k in ("authority", "scheme", "port", "ignoreUriCase", "withoutHeaders",
                                             "sourceNamespace", "statPrefix")]
        if "gateways" in m:
            names = [str(g).split("/")[-1] for g in sequence(m["gateways"], (*mp, "gateways"))]
            if (gateway or "mesh") not in names:
                return None  # this entry is for other gateways: not a drop
        if unsupported:
            for key in unsupported:
                r.drop((*mp, key), "match entry dropped: this condition cannot be expressed "
                       "(dropping only the condition would widen the match)")
            return None
        if "uri" in m:
            uri = mapping(m["uri"], (*mp, "uri"))
            kind = next((k for k in ("exact", "prefix", "regex") if k in uri), None)
            if kind is None:
                raise Malformed((*mp, "uri"), "needs exact, prefix or regex")
            out["path"] = {kind: str(uri[kind])}
        if "method" in m:
            method = mapping(m["method"], (*mp, "method"))
            if "exact" not in method:
                r.drop((*mp, "method"), "match entry dropped: only exact method matches are supported")
                return None
            out["method"] = [str(method["exact"]).upper()]
        for field, key in (("headers", "headers"), ("queryParams", "query")):
            if field in m:
                conds = {}
                for name, cond in mapping(m[field], (*mp, field)).items():
                    cond = mapping(cond, (*mp, field, name))
                    kind = next((k for k in ("exact", "prefix", "regex") if k in cond), None)
                    conds[str(name)] = {kind: str(cond[kind])} if kind else {"present": True}
                out[key] = conds
        if "sourceLabels" in m:
            labels = {str(k): str(v) for k, v in mapping(m["sourceLabels"], (*mp, "sourceLabels")).items()}
            app = self.kube.app_of_labels(labels)
            if app is None:
                r.drop((*mp, "sourceLabels"), "match entry dropped: the labels name no known workload")
                return None
            version = meshctl_name(labels["version"]) if "version" in labels else None
            known = {w.version for w in self.kube.versions(app)}
            if version is not None and known and version not in known:
                r.drop((*mp, "sourceLabels"), f"match entry dropped: no workload {app} {version} (it never matches)")
                return None
            out["from"] = [f"{app}/{version}" if version else app]
        elif gateway is not None:
            out["from"] = [f"gateway/{gateway}"]
        return out

    def _backends(self, r: Reading, service: str, routes: list[Any], path: Path) -> list[dict[str, Any]]:
        backends: list[dict[str, Any]] = []
        weights: list[int] = []
        for k, dest in enumerate(routes):
            dp: Path = (*path, k)
            dest = mapping(dest, dp)
            d = mapping(dest.get("destination"), (*dp, "destination"))
            host = self._host(d.get("host"), (*dp, "destination", "host"), r.src)
            self.out.service(host, self.kube)
            backend: dict[str, Any] = {}
            if host != service:
                backend["service"] = host
            version = self._version(host, d["subset"] if isinstance(d.get("subset"), str) else None)
            if version is not None:
                backend["version"] = version
                self.out.version(host, version, self.kube)
            if "port" in d:
                r.drop((*dp, "destination", "port"), "a version's endpoints carry the port", kind="ignored")
            if "headers" in dest:
                headers = mapping(dest["headers"], (*dp, "headers"))
                ops = {side: header_ops(mapping(headers[side], (*dp, "headers", side)), (*dp, "headers", side))
                       for side in ("request", "response") if side in headers}
                if any(ops.values()):
                    backend["headers"] = {k: v for k, v in ops.items() if v}
            weights.append(integer(dest.get("weight", 0 if len(routes) > 1 else 100), (*dp, "weight")))
            backends.append(backend)
            r.rest(d, (*dp, "destination"), {"host", "subset", "port"})
            r.rest(dest, dp, {"destination", "weight", "headers"})
        if len(backends) > 1:
            scaled = rescale(weights)
            if scaled != weights:
                r.drop(path, f"weights {weights} rescaled to {scaled} (meshctl weights sum to 100)", kind="ignored")
            for backend, weight in zip(backends, scaled, strict=True):
                backend["weight"] = weight
            merged: dict[tuple[str | None, str | None], dict[str, Any]] = {}
            for backend in backends:
                key = (backend.get("service"), backend.get("version"))
                if key in merged and "headers" not in backend:
                    merged[key]["weight"] += backend["weight"]
                else:
                    merged.setdefault(key, backend)
            backends = list(merged.values())
        return backends

    def _redirect(self, r: Reading, red: dict[str, Any], path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "uri" in red:
            out["path"] = string(red["uri"], (*path, "uri"))
        if "authority" in red:
            out["host"] = string(red["authority"], (*path, "authority"))
        if "scheme" in red:
            out["scheme"] = string(red["scheme"], (*path, "scheme")).lower()
        if "port" in red:
            out["port"] = integer(red["port"], (*path, "port"))
        code = red.get("redirectCode", 301)
        if code in REDIRECT_CODES:
            out["status"] = code
        else:
            r.drop((*path, "redirectCode"), f"{code} is not a redirect status meshctl sends; 301 used")
        r.rest(red, path, {"uri", "authority", "scheme", "port", "redirectCode"},
               {"derivePort": "the port is the request's unless `port` is set"})
        return out

    def _retries(self, r: Reading, retries: dict[str, Any], path: Path) -> dict[str, Any] | None:
        out: dict[str, Any] = {"attempts": min(10, integer(retries.get("attempts", 2), (*path, "attempts")))}
        if "perTryTimeout" in retries:
            out["perTryTimeout"] = duration(retries["perTryTimeout"], (*path, "perTryTimeout"))
        if "retryOn" in retries:
            conds = [c.strip() for c in string(retries["retryOn"], (*path, "retryOn")).split(",") if c.strip()]
            kept = [c for c in conds if c in RETRY_ON or (c.isdigit() and len(c) == 3)]
            lost = [c for c in conds if c not in kept]
            if lost:
                r.drop((*path, "retryOn"), f"conditions {', '.join(lost)} have no meshctl equivalent")
            if kept:
                out["on"] = kept
        r.rest(retries, path, {"attempts", "perTryTimeout", "retryOn"},
               {"retryRemoteLocalities": "meshctl has no localities"})
        return out

    def _fault(self, r: Reading, fault: dict[str, Any], path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "delay" in fault:
            delay = mapping(fault["delay"], (*path, "delay"))
            if "fixedDelay" in delay:
                out["delay"] = {"fixed": duration(delay["fixedDelay"], (*path, "delay", "fixedDelay")),
                                "percent": _percent(delay, (*path, "delay"))}
            r.rest(delay, (*path, "delay"), {"fixedDelay", "percentage", "percent"},
                   {"exponentialDelay": "only fixed delays"})
        if "abort" in fault:
            abort = mapping(fault["abort"], (*path, "abort"))
            if "httpStatus" in abort:
                out["abort"] = {"status": integer(abort["httpStatus"], (*path, "abort", "httpStatus")),
                                "percent": _percent(abort, (*path, "abort"))}
            r.rest(abort, (*path, "abort"), {"httpStatus", "percentage", "percent"},
                   {"grpcStatus": "gRPC status aborts are not supported", "http2Error": "not supported"})
        r.rest(fault, path, {"delay", "abort"})
        return out

    def _mirror(self, r: Reading, service: str, entry: dict[str, Any], path: Path) -> dict[str, Any] | None:
        mirrors = sequence(entry.get("mirrors"), (*path, "mirrors"))
        if "mirror" in entry:
            target = mapping(entry["mirror"], (*path, "mirror"))
            percent = _percent({"percentage": entry.get("mirrorPercentage"), "percent": entry.get("mirrorPercent")}
                               if ("mirrorPercentage" in entry or "mirrorPercent" in entry) else {}, path)
            where: Path = (*path, "mirror")
        elif mirrors:
            first = mapping(mirrors[0], (*path, "mirrors", 0))
            target = mapping(first.get("destination"), (*path, "mirrors", 0, "destination"))
            percent = _percent(first, (*path, "mirrors", 0))
            where = (*path, "mirrors", 0, "destination")
            for k in range(1, len(mirrors)):
                r.drop((*path, "mirrors", k), "meshctl mirrors to one destination per rule")
        else:
            return None
        host = self._host(target.get("host"), (*where, "host"), r.src)
        self.out.service(host, self.kube)
        out: dict[str, Any] = {"percent": percent}
        if host != service:
            out["service"] = host
        version = self._version(host, target["subset"] if isinstance(target.get("subset"), str) else None)
        if version:
            out["version"] = version
            self.out.version(host, version, self.kube)
        return out

    def _rewrite(self, r: Reading, rewrite: dict[str, Any], path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "uri" in rewrite:
            out["pathPrefix"] = string(rewrite["uri"], (*path, "uri"))
        if "authority" in rewrite:
            out["host"] = string(rewrite["authority"], (*path, "authority"))
        if "uriRegexRewrite" in rewrite:
            rx = mapping(rewrite["uriRegexRewrite"], (*path, "uriRegexRewrite"))
            out["regex"] = {"pattern": string(rx.get("match"), (*path, "uriRegexRewrite", "match")),
                            "substitution": str(rx.get("rewrite", ""))}
        r.rest(rewrite, path, {"uri", "authority", "uriRegexRewrite"})
        return out

    # --- gateways and security ------------------------------------------------------------

    def _gateway(self, src: Src, r: Reading) -> None:
        spec = src.spec
        listeners = []
        https_redirect = False
        for i, server in enumerate(sequence(spec.get("servers"), ("spec", "servers"))):
            sp: Path = ("spec", "servers", i)
            server = mapping(server, sp)
            port = mapping(server.get("port"), (*sp, "port"))
            protocol = str(port.get("protocol", "HTTP")).upper()
            tls = mapping(server.get("tls"), (*sp, "tls"))
            if protocol not in ("HTTP", "HTTP2"):
                r.drop(sp, f"{protocol} server: certificates come from Kubernetes secrets; add an https "
                       "listener with certificate files")
                continue
            if tls.get("httpsRedirect") is True:
                https_redirect = True
            listener: dict[str, Any] = {"name": meshctl_name(str(port.get("name") or f"http-{i}")),
                                        "port": integer(port.get("number"), (*sp, "port", "number"))}
            hosts = [str(h).split("/")[-1].lower() for h in sequence(server.get("hosts"), (*sp, "hosts"))]
            if hosts and "*" not in hosts:
                listener["hosts"] = hosts
            listeners.append(listener)
            r.rest(server, sp, {"port", "hosts", "tls"}, ignored={"name", "bind", "defaultEndpoint"})
        r.rest(spec, ("spec",), {"servers"}, ignored={"selector"})
        rules = self.gateway_rules.get(src.name, [])
        if not listeners or not rules:
            r.drop(("spec",), "gateway not imported: " + ("no HTTP server" if not listeners
                   else "no VirtualService routes through it"))
            return
        doc = OutDoc("Gateway", meshctl_name(src.name), {}, [f"{src.label} ({src.where})"])
        if len(listeners) == 1 and "hosts" not in listeners[0]:
            doc.spec["port"] = listeners[0]["port"]
        else:
            taken: set[str] = set()
            for listener in listeners:
                listener["name"] = unique_name(listener["name"], taken)
            doc.spec["listeners"] = listeners
        out_rules = []
        if https_redirect:
            out_rules.append({"name": "https-redirect", "redirect": {"scheme": "https", "status": 301}})
        taken = {"https-redirect"} if https_redirect else set()
        for rule, origin in rules:
            rule["name"] = unique_name(rule["name"], taken)
            doc.rule_origins[rule["name"]] = origin
            out_rules.append(rule)
        doc.spec["rules"] = out_rules
        self.out.gateways[doc.name] = doc

    def _peer_authentication(self, src: Src, r: Reading) -> None:
        spec = src.spec
        if "selector" in spec:
            r.drop(("spec", "selector"), "mTLS is mesh-wide in meshctl: a per-workload mode is not imported")
            return
        mode = str(mapping(spec.get("mtls"), ("spec", "mtls")).get("mode", "UNSET")).upper()
        if mode not in MTLS:
            raise Malformed(("spec", "mtls", "mode"), f"unknown mode {mode}")
        assert self.out.mesh is not None
        self.out.mesh.spec["mtls"] = MTLS[mode]
        self.out.mesh.origins.append(f"{src.label} ({src.where})")
        r.rest(spec, ("spec",), {"mtls"}, {"portLevelMtls": "mTLS is per mesh, not per port"})

    def _authorization_policy(self, src: Src, r: Reading) -> None:
        spec = src.spec
        action = str(spec.get("action", "ALLOW")).upper()
        if action not in ("ALLOW", "DENY"):
            r.drop(("spec", "action"), f"{action} policies are not imported")
            return
        selector = mapping(mapping(spec.get("selector"), ("spec", "selector")).get("matchLabels"),
                           ("spec", "selector", "matchLabels"))
        if selector:
            app = self.kube.app_of_labels({str(k): str(v) for k, v in selector.items()})
            if app is None:
                raise Malformed(("spec", "selector"), "the selector names no known workload")
            services = [app]
        else:
            services = sorted(self.out.services)
        rules = []
        raw_rules = sequence(spec.get("rules"), ("spec", "rules"))
        for i, rule in enumerate(raw_rules):
            rules.extend(self._access_rules(r, src, mapping(rule, ("spec", "rules", i)), ("spec", "rules", i)))
        if not raw_rules and action == "ALLOW":
            action, rules = "DENY", [{}]  # Istio: an ALLOW policy without rules allows nothing
            if not selector:
                assert self.out.mesh is not None
                self.out.mesh.spec["accessDefault"] = "deny"
                self.out.mesh.origins.append(f"{src.label} ({src.where})")
                return
        if not rules:
            r.drop(("spec", "rules"), "policy not imported: none of its rules can be carried over")
            return
        for service in services:
            self.out.service(service, self.kube)
            name = meshctl_name(src.name if selector else f"{src.name}-{service}")
            doc = OutDoc("AccessPolicy", name, {"service": service, "action": action.lower(), "rules": rules},
                         [f"{src.label} ({src.where})"])
            self.out.access.setdefault(service, []).append(doc)
        r.rest(spec, ("spec",), {"action", "selector", "rules"},
               {"provider": "CUSTOM providers are not imported", "targetRef": "use selector",
                "targetRefs": "use selector"})

    def _access_rules(self, r: Reading, src: Src, rule: dict[str, Any], path: Path) -> list[dict[str, Any]]:
        sources: list[str] | None = None
        for j, item in enumerate(sequence(rule.get("from"), (*path, "from"))):
            source = mapping(mapping(item, (*path, "from", j)).get("source"), (*path, "from", j, "source"))
            named = self._principals(r, src, source, (*path, "from", j, "source"))
            if named is None:
                return []
            sources = (sources or []) + named
        operations: list[dict[str, Any]] = []
        for j, item in enumerate(sequence(rule.get("to"), (*path, "to"))):
            op = mapping(mapping(item, (*path, "to", j)).get("operation"), (*path, "to", j, "operation"))
            extra = [k for k in op if k not in ("methods", "paths")]
            if extra:
                r.drop((*path, "to", j, "operation", extra[0]),
                       "rule dropped: only methods and paths can be expressed")
                return []
            entry: dict[str, Any] = {}
            if "methods" in op:
                entry["methods"] = [str(m).upper() for m in sequence(op["methods"], (*path, "to", j, "operation"))]
            if "paths" in op:
                entry["paths"] = [str(p) for p in sequence(op["paths"], (*path, "to", j, "operation", "paths"))]
            operations.append(entry)
        if "when" in rule:
            r.drop((*path, "when"), "rule dropped: `when` conditions cannot be expressed")
            return []
        out = []
        for op in operations or [{}]:
            entry = dict(op)
            if sources is not None:
                entry["from"] = sorted(set(sources))
            out.append(entry)
        return out

    def _principals(self, r: Reading, src: Src, source: dict[str, Any], path: Path) -> list[str] | None:
        extra = [k for k in source if k not in ("principals", "namespaces")]
        if extra:
            r.drop((*path, extra[0]), "rule dropped: only principals and namespaces can be expressed")
            return None
        out: list[str] = []
        for k, principal in enumerate(sequence(source.get("principals"), (*path, "principals"))):
            text = str(principal)
            if text == "*":
                out.append("*")
                continue
            account = text.rsplit("/sa/", 1)[-1] if "/sa/" in text else None
            service = self.kube.accounts.get(account or "") or (
                meshctl_name(account) if account and meshctl_name(account) in self.out.services else None)
            if service is None:
                r.drop((*path, "principals", k), f"principal {text} names no known workload")
                continue
            out.append(service)
        for k, ns in enumerate(sequence(source.get("namespaces"), (*path, "namespaces"))):
            if str(ns) in (src.namespace, "*"):
                out.append("*")
            else:
                r.drop((*path, "namespaces", k), "meshctl has one namespace: other namespaces are not imported")
        return out or None


def _plain(rule: dict[str, Any]) -> bool:
    """A rule that only forwards to the whole service, as the default route does."""
    return rule.get("backends") == [{}] and set(rule) <= {"name", "match", "backends", "timeout"}


def _percent(holder: dict[str, Any], path: Path) -> float:
    if holder.get("percentage") is not None:
        value = mapping(holder["percentage"], (*path, "percentage")).get("value", 0)
        return max(0.0, min(100.0, number(value, (*path, "percentage", "value"))))
    if holder.get("percent") is not None:
        return max(0.0, min(100.0, number(holder["percent"], (*path, "percent"))))
    return 100.0


def import_istio(objects: list[Src], kube: Kube, report: ImportReport) -> Output:
    return IstioImport(objects, kube, report).run()
