"""The service graph: a node per service version and gateway, an edge per caller -> callee.

Edges come from the caller's own reports (reporter="source": what the caller experienced,
failures to connect included); the callee's reports add what only it knows: whether the caller
came over verified mutual TLS, and which requests its access policy refused. Refused traffic
becomes an edge of its own (kind "denied"). Edges the policy allows but nobody uses yet are
drawn idle, so the picture does not jump when traffic starts. `rank` (longest path from a
gateway) gives the page a layout that stays put across refreshes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshctl.dashboard.mesh import MeshState
from meshctl.dashboard.series import UNKNOWN, Counts, Series

WARN_ERROR_RATE = 1.0  # percent: amber
FAIL_ERROR_RATE = 5.0  # percent: red
MTLS_SHARE = 0.99  # the lock: (nearly) every request arrived over verified mTLS


def gateway_id(name: str) -> str:
    return f"gateway/{name.removeprefix('gateway/')}"


def service_id(service: str) -> str:
    return f"service/{service}"


def version_id(service: str, version: str) -> str:
    return f"service/{service}/{version}"


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def numbers(counts: Counts, seconds: float) -> dict[str, Any]:
    """rps, error %, p50/p99 of some counters over `seconds`, rounded for people."""
    requests = counts.requests
    return {
        "requests": int(requests),
        "rps": _round(requests / seconds, 2) if seconds > 0 else None,
        "error_rate": _round(100.0 * counts.errors / requests, 2) if requests else None,
        "p50_ms": _round(counts.quantile_ms(0.50)),
        "p99_ms": _round(counts.quantile_ms(0.99)),
    }


def health(error_rate: float | None, healthy: int, instances: int) -> str:
    """ok | warn | fail | idle: the colour of a node or edge."""
    if instances and healthy == 0:
        return "fail"
    if error_rate is not None and error_rate >= FAIL_ERROR_RATE:
        return "fail"
    if (error_rate is not None and error_rate >= WARN_ERROR_RATE) or healthy < instances:
        return "warn"
    return "ok" if error_rate is not None else "idle"


@dataclass
class _Edge:
    source: str
    target: str
    configured: bool = False
    counts: Counts = field(default_factory=Counts)
    secured: Counts = field(default_factory=Counts)  # the callee's reports of this edge


def caller_node(mesh: MeshState, workload: str, version: str) -> str | None:
    if workload.startswith("gateway/"):
        return gateway_id(workload)
    gateway = next((g.name for g in mesh.plan.topology.gateways if workload == g.instance), None)
    if gateway is not None and not _known_service(mesh, workload):
        return gateway_id(gateway)  # Istio's spelling: the gateway's workload, gateway-<name>
    if workload == UNKNOWN or not mesh.records_of(workload) and not _known_service(mesh, workload):
        return None
    if version != UNKNOWN and _has_version(mesh, workload, version):
        return version_id(workload, version)
    return service_id(workload)


def callee_node(mesh: MeshState, service: str, version: str) -> str | None:
    if service in (UNKNOWN, "passthrough", "PassthroughCluster", "BlackHoleCluster", ""):
        return None
    if not _known_service(mesh, service):
        return f"external/{service}"
    if version != UNKNOWN and _has_version(mesh, service, version):
        return version_id(service, version)
    return service_id(service)


def _known_service(mesh: MeshState, name: str) -> bool:
    return any(s.name == name for s in mesh.plan.topology.services)


def _has_version(mesh: MeshState, service: str, version: str) -> bool:
    return any(
        v.service == service and v.version == version for v in mesh.plan.topology.versions()
    )


def configured_edges(mesh: MeshState) -> set[tuple[str, str]]:
    """Every caller -> callee version some rule can send traffic to."""
    versions = {s.name: [v.version for v in s.versions] for s in mesh.plan.topology.services}
    out: set[tuple[str, str]] = set()
    for config in mesh.configs.values():
        if config.kind == "gateway":
            callers = [gateway_id(config.name)]
            targets = {r.service for r in config.gateway.rules if r.service} if config.gateway else set()
        else:
            callers = [version_id(config.name, v) for v in versions.get(config.name, [])]
            targets = set(config.destinations)
        for target in sorted(targets):
            dest = config.destinations.get(target)
            if dest is None:
                continue
            reached: set[str] = set()
            for rule in dest.rules:
                for backend in rule.backends:
                    if backend.service != dest.service:
                        continue
                    reached.update([backend.version] if backend.version else dest.versions)
            for caller in callers:
                for version in sorted(reached):
                    out.add((caller, version_id(dest.service, version)))
    return out


def build_edges(mesh: MeshState, traffic: Series, seconds: float) -> list[dict[str, Any]]:
    edges: dict[tuple[str, str], _Edge] = {}
    denied: dict[tuple[str, str], Counts] = {}
    for source, target in configured_edges(mesh):
        edges[(source, target)] = _Edge(source, target, configured=True)
    # The callers' reports make the edges; then the callees' add the lock and their refusals.
    for key, counts in sorted(traffic.items(), key=lambda kv: (kv[0].reporter != "source", kv[0])):
        src = caller_node(mesh, key.source, key.source_version)
        dst = callee_node(mesh, key.destination, key.destination_version)
        if src is None or dst is None:
            continue
        if key.reporter == "destination":
            edge = edges.get((src, dst))
            if edge is not None:
                edge.secured.add(counts)
            if counts.denied:  # refused by the callee: drawn apart, out of the edge's numbers
                denied.setdefault((src, service_id(key.destination)), Counts()).add(
                    Counts(requests=counts.denied)
                )
            continue
        if counts.denied:  # refused at the source, it never left the caller
            denied.setdefault((src, service_id(key.destination)), Counts()).add(
                Counts(requests=counts.denied)
            )
        allowed = Counts(counts.requests - counts.denied, counts.errors, 0.0, 0.0, counts.buckets)
        if allowed.requests > 0 and dst != service_id(key.destination):
            edges.setdefault((src, dst), _Edge(src, dst)).counts.add(allowed)
    # The callee's refusals also reached the caller as 403 answers: not allowed traffic.
    for edge in edges.values():
        if edge.secured.denied:
            edge.counts.requests = max(edge.counts.requests - edge.secured.denied, 0.0)
    out = [_edge_json(e, seconds) for _, e in sorted(edges.items())]
    for (src, dst), counts in sorted(denied.items()):
        out.append({
            "id": f"{src}->{dst}:denied", "source": src, "target": dst, "kind": "denied",
            "configured": False, "mtls": None, "health": "denied",
            "requests": int(counts.requests),
            "rps": _round(counts.requests / seconds, 2) if seconds > 0 else None,
            "error_rate": None, "p50_ms": None, "p99_ms": None,
        })
    return out


def _edge_json(edge: _Edge, seconds: float) -> dict[str, Any]:
    nums = numbers(edge.counts, seconds)
    secured = edge.secured
    mtls = (secured.mtls >= MTLS_SHARE * secured.requests) if secured.requests else None
    state = health(nums["error_rate"], 1, 1) if edge.counts.requests else "idle"
    return {
        "id": f"{edge.source}->{edge.target}", "source": edge.source, "target": edge.target,
        "kind": "traffic", "configured": edge.configured, "mtls": mtls, "health": state, **nums,
    }


def served(traffic: Series, service: str, version: str | None = None) -> Counts:
    """What a service (version) answered, as its callers' sidecars counted it, plus what its
    own sidecars counted from callers without one, less what its access policy refused.
    Health probes that sidecars send on their own are not in the callers' reports, so they
    do not tilt the split."""
    total = Counts()
    refused = 0.0
    for key, counts in traffic.items():
        if key.destination != service or key.destination_version == UNKNOWN:
            continue
        if version is not None and key.destination_version != version:
            continue
        if key.reporter == "source" or key.source == UNKNOWN:
            total.add(Counts(counts.requests - counts.denied, counts.errors, 0.0, counts.mtls,
                             counts.buckets))
        if key.reporter == "destination" and key.source != UNKNOWN:
            refused += counts.denied  # reached the callee and refused there: not served
    total.requests = max(total.requests - refused, 0.0)
    return total


def ranks(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Longest path from a node nobody calls (gateways first); cycles are cut."""
    nodes = list(nodes)
    out_edges: dict[str, set[str]] = {n: set() for n in nodes}
    incoming: dict[str, int] = dict.fromkeys(nodes, 0)
    for a, b in set(edges):
        if a in out_edges and b in incoming and a != b:
            out_edges[a].add(b)
            incoming[b] += 1
    rank = dict.fromkeys(nodes, 0)
    remaining = dict(incoming)
    ready = sorted(n for n in nodes if remaining[n] == 0)
    seen: set[str] = set()
    while ready or len(seen) < len(nodes):
        if not ready:  # a cycle: start again from the unvisited node with the fewest callers
            ready = [min((n for n in nodes if n not in seen), key=lambda n: (remaining[n], n))]
        node = ready.pop(0)
        if node in seen:
            continue
        seen.add(node)
        for nxt in sorted(out_edges[node]):
            if nxt in seen:
                continue
            rank[nxt] = max(rank[nxt], rank[node] + 1)
            remaining[nxt] -= 1
            if remaining[nxt] == 0:
                ready.append(nxt)
    return rank


def build_nodes(mesh: MeshState, traffic: Series, seconds: float,
                revisions: Mapping[str, str | None]) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    for gw in mesh.plan.topology.gateways:
        records = [r for r in mesh.plan.sidecars if r.sidecar == gw.sidecar]
        sent = Counts()
        for key, counts in traffic.items():
            if key.reporter == "source" and key.source in (gw.sidecar, gw.instance):
                sent.add(counts)
        nums = numbers(sent, seconds)
        healthy = sum(1 for r in records if mesh.healthy(r))
        nodes.append({
            "id": gateway_id(gw.name), "kind": "gateway", "label": gw.name, "parent": None,
            "service": None, "version": None, "instances": len(records), "healthy": healthy,
            "health": health(nums["error_rate"], healthy, len(records)),
            "revisions": sorted({revisions.get(r.instance) or "?" for r in records}), **nums,
        })
    for svc in mesh.plan.topology.services:
        total = served(traffic, svc.name)
        nodes.append({
            "id": service_id(svc.name), "kind": "service", "label": svc.name, "parent": None,
            "service": svc.name, "version": None, "protocol": svc.protocol,
            **numbers(total, seconds),
        })
        for ver in svc.versions:
            records = mesh.records_of(svc.name, ver.version)
            healthy = sum(1 for r in records if mesh.healthy(r))
            counts = served(traffic, svc.name, ver.version)
            nums = numbers(counts, seconds)
            share = 100.0 * counts.requests / total.requests if total.requests else None
            instances = len(records) if ver.run else len(ver.endpoints)
            nodes.append({
                "id": version_id(svc.name, ver.version), "kind": "version",
                "label": ver.version, "parent": service_id(svc.name), "service": svc.name,
                "version": ver.version, "instances": instances,
                "healthy": healthy if ver.run else instances,
                "static": not ver.run,
                "health": health(nums["error_rate"], healthy if ver.run else instances, instances),
                "share": _round(share), "revisions": sorted(
                    {revisions.get(r.instance) or "?" for r in records}
                ), **nums,
            })
    return nodes


def build_graph(mesh: MeshState, traffic: Series, seconds: float,
                revisions: Mapping[str, str | None]) -> dict[str, Any]:
    nodes = build_nodes(mesh, traffic, seconds, revisions)
    edges = build_edges(mesh, traffic, seconds)
    known = {n["id"] for n in nodes}
    for edge in edges:  # callees outside the mesh (allow-any) get a node of their own
        if edge["target"] not in known:
            known.add(edge["target"])
            name = edge["target"].removeprefix("external/")
            nodes.append({"id": edge["target"], "kind": "external", "label": name, "parent": None,
                          "service": name, "version": None, "health": "idle"})
    # Rank versions by their own edges, then give a service its versions' largest rank.
    leaf = [n["id"] for n in nodes if n["kind"] != "service"]
    parent = {n["id"]: n["parent"] for n in nodes if n.get("parent")}
    pairs = [(e["source"], e["target"]) for e in edges if e["kind"] != "denied"]  # refused: no say
    pairs += [(a, v) for a, b in pairs for v, p in parent.items() if p == b]  # to a service: to its versions
    rank = ranks(leaf, pairs)
    for node in nodes:
        if node["kind"] == "service":
            node["rank"] = max((rank[v] for v, p in parent.items() if p == node["id"]), default=1)
        else:
            node["rank"] = rank.get(node["id"], 0)
    for node in nodes:  # a version sits in its service's column
        if node.get("parent"):
            node["rank"] = next(n["rank"] for n in nodes if n["id"] == node["parent"])
    return {
        "revision": mesh.revision,
        "window_s": round(seconds, 1),
        "nodes": nodes,
        "edges": edges,
    }
