"""The graph from real sidecar expositions: the labels the sidecars report now and Istio's full
set (workload names, canonical service and revision) draw the same nodes and edges."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from meshctl.dashboard.graph import build_graph
from meshctl.dashboard.mesh import MeshState
from meshctl.dashboard.series import merge, parse_series
from meshctl.runtime.plan import Plan
from meshctl.runtime.state import StateDir
from meshctl.runtime.topology import GatewaySpec, ServiceSpec, Topology, VersionSpec

RUN = ("python", "-m", "app")


def shop(tmp_path: Path) -> MeshState:
    def service(name: str, *versions: str) -> ServiceSpec:
        return ServiceSpec(name, "http", "/healthz", tuple(VersionSpec(name, v, 1, RUN) for v in versions))

    topology = Topology(
        services=(service("frontend", "v1"), service("reviews", "v1", "v2"), service("ratings", "v1")),
        gateways=(GatewaySpec("public", 8080),),
    )
    plan = Plan(policy_dir=str(tmp_path), revision="r1", topology=topology)
    return MeshState(StateDir(tmp_path), plan, "r1", {}, {})


def exposition(rows: list[dict[str, str]], count: int = 10) -> str:
    """An exposition by the same client library and metric names the sidecar uses
    (proxy_addon.telemetry), with whatever label names the rows carry."""
    names = sorted({k for row in rows for k in row})
    registry = CollectorRegistry()
    requests = Counter("istio_requests", "", names, registry=registry)
    duration = Histogram("istio_request_duration_milliseconds", "", names, registry=registry,
                         buckets=(1, 5, 10, 50))
    for row in rows:
        values = [row.get(n, "") for n in names]
        requests.labels(*values).inc(count)
        for _ in range(count):
            duration.labels(*values).observe(3.0)
    return generate_latest(registry).decode()


NOW = [  # what the sidecars report today
    {"reporter": "source", "source_workload": "gateway/public", "source_version": "unknown",
     "destination_service_name": "frontend", "destination_version": "v1", "response_code": "200"},
    {"reporter": "source", "source_workload": "frontend", "source_version": "v1",
     "destination_service_name": "reviews", "destination_version": "v2", "response_code": "200"},
    {"reporter": "destination", "source_workload": "frontend", "source_version": "v1",
     "destination_service_name": "reviews", "destination_version": "v2", "response_code": "200",
     "connection_security_policy": "mutual_tls"},
    {"reporter": "source", "source_workload": "ratings", "source_version": "v1",
     "destination_service_name": "reviews", "destination_version": "unknown",
     "response_code": "403", "response_flags": "RBAC"},
]
ISTIO = [  # Istio's full label set, as the telemetry work names workloads
    {"reporter": "source", "source_workload": "gateway-public", "source_app": "gateway-public",
     "source_canonical_service": "gateway-public", "source_canonical_revision": "latest",
     "source_version": "unknown", "destination_service": "frontend.shop.svc.cluster.local",
     "destination_service_name": "frontend", "destination_workload": "frontend-v1",
     "destination_canonical_service": "frontend", "destination_version": "v1",
     "destination_canonical_revision": "v1", "response_code": "200"},
    {"reporter": "source", "source_workload": "frontend-v1", "source_app": "frontend",
     "source_canonical_service": "frontend", "source_canonical_revision": "v1", "source_version": "v1",
     "destination_service_name": "reviews", "destination_workload": "reviews-v2",
     "destination_canonical_service": "reviews", "destination_version": "v2",
     "destination_canonical_revision": "v2", "response_code": "200"},
    {"reporter": "destination", "source_workload": "frontend-v1", "source_app": "frontend",
     "source_canonical_service": "frontend", "source_canonical_revision": "v1", "source_version": "v1",
     "destination_service_name": "reviews", "destination_workload": "reviews-v2",
     "destination_canonical_service": "reviews", "destination_version": "v2",
     "destination_canonical_revision": "v2", "response_code": "200",
     "connection_security_policy": "mutual_tls"},
    {"reporter": "source", "source_workload": "ratings-v1", "source_app": "ratings",
     "source_canonical_service": "ratings", "source_canonical_revision": "v1", "source_version": "v1",
     "destination_service_name": "reviews", "destination_canonical_service": "reviews",
     "destination_version": "unknown", "response_code": "403", "response_flags": "RBAC"},
]


def drawn(mesh: MeshState, rows: list[dict[str, str]]) -> dict[str, dict[str, object]]:
    graph = build_graph(mesh, merge([parse_series(exposition(rows))]), 10.0, {})
    return {e["id"]: e for e in graph["edges"] if e["requests"]}


def test_todays_labels_and_istios_full_set_draw_the_same_edges(tmp_path: Path) -> None:
    mesh = shop(tmp_path)
    now, istio = drawn(mesh, NOW), drawn(mesh, ISTIO)
    assert set(now) == set(istio) == {
        "gateway/public->service/frontend/v1",
        "service/frontend/v1->service/reviews/v2",
        "service/ratings/v1->service/reviews:denied",
    }
    for edge_id, edge in now.items():
        assert istio[edge_id]["rps"] == edge["rps"] == 1.0
    assert now["service/frontend/v1->service/reviews/v2"]["mtls"] is True
    assert istio["service/frontend/v1->service/reviews/v2"]["mtls"] is True
    assert now["service/frontend/v1->service/reviews/v2"]["p99_ms"] == istio[
        "service/frontend/v1->service/reviews/v2"]["p99_ms"]


def test_nodes_carry_traffic_share_and_a_stable_rank(tmp_path: Path) -> None:
    mesh = shop(tmp_path)
    graph = build_graph(mesh, merge([parse_series(exposition(NOW))]), 10.0, {})
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert nodes["gateway/public"]["rank"] == 0 and nodes["gateway/public"]["rps"] == 1.0
    assert nodes["service/frontend/v1"]["rank"] == 1
    assert nodes["service/reviews/v2"]["rank"] == nodes["service/reviews/v1"]["rank"] == 2
    assert nodes["service/reviews/v2"]["share"] == 100.0 and nodes["service/reviews/v1"]["share"] == 0.0
    # no sidecars in this plan: versions without instances are not "healthy"
    assert nodes["service/reviews/v1"]["instances"] == 0
