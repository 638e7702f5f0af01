"""Per-edge counters from the sidecar's own exposition, Istio's other label spellings, the
sampled history, and the graph's stable ranks."""

from __future__ import annotations

import pytest

from meshctl.dashboard.graph import ranks
from meshctl.dashboard.sampler import History, Sample, Scraped
from meshctl.dashboard.series import EdgeKey, delta, is_probe, parse_series
from proxy_addon.labels import ISTIO_LABELS
from proxy_addon.telemetry import Metrics


def exposition(*requests: tuple[tuple[str, ...], float]) -> str:
    """What a real sidecar's /metrics says after these requests (the sidecar's own Metrics)."""
    metrics = Metrics()
    metrics.set_revision("rev1")
    for labels, duration_ms in requests:
        metrics.observe(labels, duration_ms, 0, 0)
    return metrics.exposition().decode()


def labels(reporter: str, source: str, source_version: str, dest: str, version: str,
           code: str = "200", flags: str = "-", security: str = "unknown") -> tuple[str, ...]:
    """The sidecar's full Istio label tuple; the labels not given are "unknown"."""
    given = {
        "reporter": reporter, "source_workload": source, "source_version": source_version,
        "destination_service_name": dest, "destination_version": version, "response_code": code,
        "response_flags": flags, "connection_security_policy": security,
    }
    return tuple(given.get(name, "unknown") for name in ISTIO_LABELS)


def edge_of(key: tuple[str, ...]) -> EdgeKey:
    value = dict(zip(ISTIO_LABELS, key, strict=True))
    return EdgeKey(value["reporter"], value["source_workload"], value["source_version"],
                   value["destination_service_name"], value["destination_version"])


def test_edges_are_split_by_caller_and_callee_with_errors_denials_and_mtls() -> None:
    text = exposition(
        (labels("destination", "frontend", "v1", "reviews", "v2", security="mutual_tls"), 4.0),
        (labels("destination", "frontend", "v1", "reviews", "v2", "503", security="mutual_tls"), 40.0),
        (labels("destination", "frontend", "v1", "reviews", "v2", "403", "RBAC", "mutual_tls"), 1.0),
        (labels("source", "frontend", "v1", "ratings", "unknown", "403", "RBAC"), 0.3),
    )
    series = parse_series(text)
    served = series[EdgeKey("destination", "frontend", "v1", "reviews", "v2")]
    assert (served.requests, served.errors, served.denied, served.mtls) == (3, 1, 1, 3)
    assert served.quantile_ms(0.5) is not None and served.quantile_ms(0.99) <= 50.0
    refused = series[EdgeKey("source", "frontend", "v1", "ratings", "unknown")]
    assert (refused.requests, refused.denied) == (1, 1)


def test_istio_canonical_labels_draw_the_same_edge() -> None:
    text = (
        "# TYPE istio_requests_total counter\n"
        'istio_requests_total{reporter="source",source_canonical_service="productpage",'
        'source_canonical_revision="v1",destination_service="reviews.default.svc.cluster.local",'
        'destination_canonical_revision="v3",response_code="200"} 7\n'
    )
    assert parse_series(text) == {
        EdgeKey("source", "productpage", "v1", "reviews", "v3"): parse_series(text)[
            EdgeKey("source", "productpage", "v1", "reviews", "v3")
        ]
    }
    assert parse_series(text)[EdgeKey("source", "productpage", "v1", "reviews", "v3")].requests == 7


def test_delta_counts_a_restarted_sidecar_from_zero() -> None:
    key = labels("source", "frontend", "v1", "reviews", "v1")
    before = parse_series(exposition(*[(key, 1.0)] * 5))
    after = parse_series(exposition(*[(key, 1.0)] * 8))
    restarted = parse_series(exposition(*[(key, 1.0)] * 2))
    edge = edge_of(key)
    assert delta(before, after)[edge].requests == 3
    assert delta(after, restarted)[edge].requests == 2


def test_health_probes_of_a_caller_sidecar_are_recognised() -> None:
    assert is_probe(EdgeKey("destination", "frontend", "unknown", "reviews", "v1"))
    assert not is_probe(EdgeKey("destination", "gateway/public", "unknown", "frontend", "v1"))
    assert not is_probe(EdgeKey("source", "frontend", "unknown", "reviews", "v1"))


def test_history_windows_and_slices_are_sums_of_steps() -> None:
    key = labels("source", "frontend", "v1", "reviews", "v1")
    edge = edge_of(key)
    history = History(keep_s=30)
    for i in range(12):  # one sample a second, two more requests each time
        text = exposition(*[(key, 1.0)] * (2 * i + 1))
        history.add(Sample(at=1000.0 + i, sidecars={"frontend-v1-0": Scraped(True, "rev1", parse_series(text))}))
    seconds, by_instance = history.window(5)
    assert seconds == pytest.approx(5.0)
    assert by_instance["frontend-v1-0"][edge].requests == 10
    slices = history.buckets(5)
    assert [round(s) for _, s, _ in slices] == [5, 5, 1]
    assert [series[edge].requests for _, _, series in slices] == [10, 10, 2]


def test_a_sidecar_that_was_away_adds_no_burst() -> None:
    key = labels("source", "frontend", "v1", "reviews", "v1")
    history = History()
    many = parse_series(exposition(*[(key, 1.0)] * 50))
    history.add(Sample(0.0, {"a": Scraped(False)}))
    history.add(Sample(1.0, {"a": Scraped(True, None, many)}))
    assert history.window(10)[1] == {}


def test_ranks_are_longest_paths_and_survive_cycles() -> None:
    edges = [("gw", "a"), ("a", "b"), ("gw", "b"), ("b", "c"), ("c", "b")]
    got = ranks(["gw", "a", "b", "c", "lonely"], edges)
    assert got["gw"] == 0 and got["a"] == 1 and got["b"] == 2 and got["lonely"] == 0
    assert got["c"] == 3
    assert ranks(["gw", "a", "b", "c", "lonely"], list(reversed(edges))) == got  # order-free


def test_a_missed_scrape_loses_no_requests_and_keeps_the_revision() -> None:
    key = labels("source", "frontend", "v1", "reviews", "v1")
    edge = edge_of(key)
    history = History()
    history.add(Sample(0.0, {"a": Scraped(True, "rev1", parse_series(exposition(*[(key, 1.0)] * 5)))}))
    history.add(Sample(1.0, {"a": Scraped(False)}))  # too slow to answer this time
    history.add(Sample(2.0, {"a": Scraped(True, None, parse_series(exposition(*[(key, 1.0)] * 9)))}))
    assert history.window(10)[1]["a"][edge].requests == 4
    assert history.revisions == {"a": "rev1"}
