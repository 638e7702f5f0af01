"""A real Prometheus finds the running shop mesh through the file_sd file, and the queries of
Flagger, Kiali and Istio's Grafana dashboards — verbatim from their sources — return the
series those tools expect, per version where a panel groups by workload.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.runtime.helpers import Load, edit, gateway_port, get, meshctl, shop_repo, wait_until
from tests.support.git import commit_all
from tests.telemetry import prom
from tests.telemetry.prom import Prometheus, all_of, flagger, grafana, kiali_response_time, kiali_traffic

pytestmark = pytest.mark.slow

NS = "shop"  # Mesh.spec.namespace: every query below filters on it
SERVICE = "reviews.shop.svc.cluster.local"
WINDOW = "30s"
EDGES = {  # (source workload, destination workload) of the shop's calls
    ("gateway-public", "frontend-v1"),
    ("frontend-v1", "catalog-v1"),
    ("frontend-v1", "reviews-v1"),
    ("frontend-v1", "reviews-v2"),
    ("reviews-v2", "ratings-v1"),
}


def _labels(result: list[dict], *names: str) -> set[tuple[str, ...]]:  # type: ignore[type-arg]
    return {tuple(r["metric"].get(n, "") for n in names) for r in result}


def _value(result: list[dict]) -> float:  # type: ignore[type-arg]
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_flagger_kiali_and_istio_dashboards_read_the_mesh(tmp_path: Path) -> None:
    repo = shop_repo(tmp_path)
    state = repo / ".meshctl"
    edit(repo / "mesh.d/mesh.yaml", "  trustDomain: shop.local\n", f"  trustDomain: shop.local\n  namespace: {NS}\n")
    commit_all(repo, "the shop runs in namespace shop")
    up = meshctl(repo, "up", "--detach", "--gateway-port", "public=0", "--timeout", "150")
    prometheus: Prometheus | None = None
    try:
        assert up.code == 0, up.stderr
        port = gateway_port(state)
        targets = json.loads((state / "prometheus/targets.json").read_text())
        plan = json.loads((state / "plan.json").read_text())
        assert len(targets) == len(plan["sidecars"])
        reviews_v2 = next(t for t in targets if t["labels"]["instance"] == "reviews-v2-0")
        assert reviews_v2["labels"] == {
            "job": "meshctl", "namespace": NS, "workload": "reviews-v2", "service": "reviews",
            "version": "v2", "instance": "reviews-v2-0"}

        config = tmp_path / "prometheus.yml"
        generated = meshctl(repo, "prometheus-config", "--scrape-interval", "1")
        assert generated.code == 0, generated.stderr
        config.write_text(generated.stdout)
        prometheus = Prometheus(config, tmp_path)

        def all_up() -> bool:
            assert prometheus is not None
            active = prometheus.active_targets()
            return len(active) == len(targets) and all(t["health"] == "up" for t in active)

        wait_until(all_up, timeout=60, what="Prometheus scraping every sidecar")

        # Idle mesh: health probes (reviews has a healthCheck) are counted apart, never as traffic.
        wait_until(lambda: prometheus is not None and prometheus.query(
            'sum(meshctl_health_checks_total{destination_service_name="reviews",result="success"}) > 0'),
            timeout=30, what="health probes counted")
        assert prometheus.query('istio_requests_total{destination_service_name="reviews"}') == []
        # meshctl's own counters exist from the start, at zero
        retries = prometheus.query('meshctl_retries_total{destination_service_name="reviews"}')
        assert retries and all(float(r["value"][1]) == 0 for r in retries)

        status, body = get("127.0.0.1", port, "/product/1", {"end-user": "jason"})
        assert status == 200 and body["served_by"]["reviews"] == "v2", body
        with Load(port, path="/product/1", threads=2, pause=0.02, max_requests=3000) as load:
            with Load(port, path="/product/2", threads=1, pause=0.05, max_requests=600):
                # jason's requests reach v2 (and ratings); the 90/10 split sends some to v2 too
                for _ in range(40):
                    get("127.0.0.1", port, "/product/3", {"end-user": "jason"})
                time.sleep(6)  # several scrapes with traffic in the window
                _check_queries(prometheus)
        assert load.failures == [] and set(load.statuses) == {200}, (load.failures[:3], set(load.statuses))
    finally:
        if prometheus is not None:
            prometheus.stop()
        meshctl(repo, "down", timeout=120)
    # down empties the target file: Prometheus stops scraping the mesh
    assert json.loads((state / "prometheus/targets.json").read_text()) == []


def _check_queries(p: Prometheus) -> None:
    # --- Flagger's built-in Istio checks, for each version as a canary target ---------------
    for workload in ("reviews-v1", "reviews-v2", "frontend-v1"):
        rate = p.query(flagger("request-success-rate", namespace=NS, target=workload, interval="1m"))
        assert _value(rate) == pytest.approx(100.0), (workload, rate)
        duration = p.query(flagger("request-duration", namespace=NS, target=workload, interval="1m"))
        assert 0 < _value(duration) < 10_000, (workload, duration)

    # --- Kiali: namespace graph traffic (destination and source reported) --------------------
    for side in ("destination", "source"):
        traffic = p.query(kiali_traffic(side, namespace=NS, seconds=60))
        edges = _labels(traffic, "source_workload", "destination_workload")
        assert EDGES <= edges, (side, edges)
        codes = _labels(traffic, "destination_service", "request_protocol", "response_code")
        assert (SERVICE, "http", "200") in codes
        for r in traffic:
            m = r["metric"]
            assert m["source_cluster"] == m["destination_cluster"] == "Kubernetes"
            assert m["destination_service_namespace"] == NS and m["source_workload_namespace"] == NS
        versions = _labels([r for r in traffic if r["metric"]["destination_service_name"] == "reviews"],
                           "destination_canonical_service", "destination_canonical_revision")
        assert versions == {("reviews", "v1"), ("reviews", "v2")}, versions
        # Kiali's response-time appender (0.95 quantile), per edge
        times = p.query(kiali_response_time(side, namespace=NS, seconds=60))
        assert EDGES <= _labels(times, "source_workload", "destination_workload"), (side, times)

    # --- Istio's Grafana service dashboard, service reviews ---------------------------------
    service_vars = {
        "qrep": "destination", "service": SERVICE, "__rate_interval": WINDOW,
        "srccluster": all_of("Kubernetes"), "srcns": all_of(NS), "srcwl": all_of("frontend-v1"),
        "dstcluster": all_of("Kubernetes"), "dstns": all_of(NS), "dstwl": all_of("reviews-v1", "reviews-v2"),
    }
    sd = "istio-service-dashboard"
    volume = p.query(grafana(sd, "Client Request Volume", "A", service_vars))
    assert _value(volume) > 0
    success = p.query(grafana(sd, "Server Success Rate (non-5xx responses)", "A", service_vars))
    assert _value(success) == pytest.approx(1.0)
    by_workload = p.query(grafana(sd, "Incoming Requests By Destination Workload And Response Code", "A",
                                  service_vars))
    assert _labels(by_workload, "destination_workload", "destination_workload_namespace", "response_code") == {
        ("reviews-v1", NS, "200"), ("reviews-v2", NS, "200")}
    # The panel uses irate (the last two scrapes, 1 s apart here): a version with ~10% of the
    # traffic may show 0 at one instant, so every series must exist and the total be above 0.
    assert sum(float(r["value"][1]) for r in by_workload) > 0
    durations = p.query(grafana(sd, "Incoming Request Duration By Service Workload", "A", service_vars))
    assert _labels(durations, "destination_workload") == {("reviews-v1",), ("reviews-v2",)}
    by_source = p.query(grafana(sd, "Incoming Requests By Source And Response Code", "A", service_vars))
    assert _labels(by_source, "source_workload", "source_workload_namespace", "response_code") == {
        ("frontend-v1", NS, "200")}

    # --- Istio's Grafana workload dashboard, workload frontend-v1 ---------------------------
    wd = "istio-workload-dashboard"
    workload_vars = {
        "qrep": "destination", "namespace": NS, "workload": "frontend-v1", "__rate_interval": WINDOW,
        "srcns": all_of(NS), "srcwl": all_of("gateway-public"),
        "dstsvc": all_of(f"catalog.{NS}.svc.cluster.local", SERVICE),
    }
    incoming = p.query(grafana(wd, "Incoming Request Volume", "A", workload_vars))
    assert _value(incoming) > 0
    from_gateway = p.query(grafana(wd, "Incoming Requests By Source And Response Code", "A", workload_vars))
    assert _labels(from_gateway, "source_workload", "response_code") == {("gateway-public", "200")}
    outgoing = p.query(grafana(wd, "Outgoing Requests By Destination And Response Code", "A", workload_vars))
    assert _labels(outgoing, "destination_service", "response_code") == {
        (f"catalog.{NS}.svc.cluster.local", "200"), (SERVICE, "200")}
    # the same panel's plain-text query (B) finds nothing: every call was mTLS
    assert p.query(grafana(wd, "Outgoing Requests By Destination And Response Code", "B", workload_vars)) == []
    # reviews v2 as the workload: its callers, and its own calls to ratings
    v2_vars = workload_vars | {"workload": "reviews-v2", "srcwl": all_of("frontend-v1"),
                               "dstsvc": all_of(f"ratings.{NS}.svc.cluster.local")}
    rate = p.query(grafana(wd, "Incoming Success Rate (non-5xx responses) By Source", "A", v2_vars))
    assert _labels(rate, "source_workload") == {("frontend-v1",)} and _value(rate) == pytest.approx(1.0)
    assert prom.UPSTREAM["istio"]["commit"]  # provenance recorded with the copied queries
