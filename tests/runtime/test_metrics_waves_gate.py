"""Small pure pieces of the runtime and rollout: metric windows, quantiles, waves, gate verdicts,
ports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from meshctl.rollout.gate import GateSpec, judge
from meshctl.rollout.waves import canary_size, split_waves
from meshctl.runtime.metrics import Snapshot, Window, parse_snapshot, pooled, quantile, window
from meshctl.runtime.ports import PortBook, port_is_free

METRICS = """\
# TYPE istio_requests_total counter
istio_requests_total{reporter="destination",response_code="200",response_flags="-"} 90.0
istio_requests_total{reporter="destination",response_code="503",response_flags="UH"} 10.0
istio_requests_total{reporter="source",destination_service_name="ratings",response_code="500",response_flags="-"} 5.0
# TYPE istio_request_duration_milliseconds histogram
istio_request_duration_milliseconds_bucket{reporter="destination",le="10.0"} 50.0
istio_request_duration_milliseconds_bucket{reporter="destination",le="100.0"} 100.0
istio_request_duration_milliseconds_bucket{reporter="destination",le="+Inf"} 100.0
istio_request_duration_milliseconds_count{reporter="destination"} 100.0
istio_request_duration_milliseconds_sum{reporter="destination"} 2000.0
# TYPE meshctl_config_revision_info gauge
meshctl_config_revision_info{revision="abc123"} 1.0
"""


def test_snapshot_sums_label_sets_and_filters_by_reporter() -> None:
    inbound = parse_snapshot(METRICS, at=0.0, reporters=["destination"])
    assert (inbound.requests, inbound.errors) == (100.0, 10.0)
    assert inbound.buckets == {10.0: 50.0, 100.0: 100.0, float("inf"): 100.0}
    assert inbound.revision == "abc123"
    everything = parse_snapshot(METRICS, at=0.0)
    assert (everything.requests, everything.errors) == (105.0, 15.0)


def test_window_is_the_difference_and_survives_a_restart() -> None:
    before = Snapshot(at=0.0, requests=100, errors=10, buckets={10.0: 50, float("inf"): 100})
    after = Snapshot(at=2.0, requests=160, errors=10, buckets={10.0: 110, float("inf"): 160})
    w = window(before, after)
    assert (w.requests, w.errors, w.rps, w.error_rate) == (60, 0, 30.0, 0.0)
    assert w.p50_ms is not None and w.p50_ms <= 10.0
    restarted = Snapshot(at=3.0, requests=5, errors=5, buckets={10.0: 5, float("inf"): 5})
    assert window(after, restarted).requests == 5  # counted from zero, not negative


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.5, 10.0), (0.75, 55.0), (0.99, 98.2), (1.0, 100.0)],
)
def test_quantile_interpolates_like_prometheus(q: float, expected: float) -> None:
    buckets = {10.0: 50.0, 100.0: 100.0, float("inf"): 100.0}
    assert quantile(q, buckets) == pytest.approx(expected)


def test_quantile_of_empty_histogram_and_of_the_inf_bucket() -> None:
    assert quantile(0.99, {}) is None
    assert quantile(0.99, {10.0: 0.0, float("inf"): 0.0}) is None
    assert quantile(0.99, {10.0: 1.0, float("inf"): 100.0}) == 10.0


@pytest.mark.parametrize(
    ("canary", "total", "expected"),
    [(1, 5, 1), (3, 2, 2), ("10%", 50, 5), ("10%", 3, 1), ("100%", 4, 4), (1, 0, 0)],
)
def test_canary_size(canary: int | str, total: int, expected: int) -> None:
    assert canary_size(canary, total) == expected


def test_waves_canary_first_then_the_rest() -> None:
    assert split_waves(["a", "b", "c"], 1) == [["a"], ["b", "c"]]
    assert split_waves(["a"], 1) == [["a"]]
    assert split_waves(["a", "b"], "100%") == [["a", "b"]]
    assert split_waves([], 1) == []


def w(requests: float, errors: float, p99: float | None) -> Window:
    return Window(seconds=1.0, requests=requests, errors=errors, p50_ms=None, p99_ms=p99)


def test_gate_verdicts() -> None:
    spec = GateSpec(window_ms=1000, max_error_rate=1.0, max_p99_ms=500)
    assert judge(spec, w(100, 0, 20), final=False) is None  # keep watching
    early = judge(spec, w(50, 10, 20), final=False)
    assert early is not None and not early.ok and "error rate 20.00%" in early.reason
    assert judge(spec, w(5, 1, 20), final=False) is None  # too few requests to stop early
    late = judge(spec, w(5, 1, 20), final=True)
    assert late is not None and not late.ok
    slow = judge(spec, w(100, 0, 900), final=True)
    assert slow is not None and not slow.ok and "p99 900ms" in slow.reason
    idle = judge(spec, w(0, 0, None), final=True)
    assert idle is not None and idle.ok and "no traffic" in idle.reason
    fine = judge(spec, w(1000, 10, 499), final=True)
    assert fine is not None and fine.ok


def test_pooled_windows_sum_counts_and_take_quantiles_of_the_summed_histograms() -> None:
    inf = float("inf")
    # one instance: 10 requests, one slow; the other: 90, all fast
    slow = window(Snapshot(at=0.0), Snapshot(at=1.0, requests=10, errors=1,
                                             buckets={10.0: 9, 1000.0: 10, inf: 10}))
    fast = window(Snapshot(at=0.0), Snapshot(at=1.0, requests=90, buckets={10.0: 90, 1000.0: 90, inf: 90}))
    both = pooled([slow, fast], 1.0)
    assert (both.requests, both.errors, both.error_rate) == (100, 1, 1.0)
    assert both.buckets == {10.0: 99, 1000.0: 100, inf: 100}
    assert both.p99_ms == quantile(0.99, {10.0: 99, 1000.0: 100, inf: 100}) == 10.0
    assert slow.p99_ms is not None and slow.p99_ms > 900  # what "the worst instance" would say
    empty = pooled([], 0.0)
    assert (empty.requests, empty.p50_ms, empty.p99_ms) == (0, None, None)


def test_port_book_keeps_free_ports_and_replaces_taken_ones(tmp_path: Path) -> None:
    book = PortBook(tmp_path / "ports.json")
    first = book.assign("a/inbound")
    other = book.assign("b/inbound")
    assert first != other
    book.save()
    again = PortBook(tmp_path / "ports.json")
    assert again.assign("a/inbound") == first
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", other))
        holder.listen()
        assert not port_is_free(other)
        third = PortBook(tmp_path / "ports.json")
        assert third.assign("b/inbound") != other


def test_ports_come_from_below_the_ephemeral_range_and_meshes_do_not_share_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meshctl.runtime import ports as ports_module

    monkeypatch.setenv("MESHCTL_PORT_CLAIMS", str(tmp_path / "claims"))
    monkeypatch.setattr(ports_module, "assignable_range", lambda: range(20_000, 20_040))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = PortBook(tmp_path / "a" / "ports.json"), PortBook(tmp_path / "b" / "ports.json")
    mine = {one.assign(f"k{i}") for i in range(15)}
    theirs = {two.assign(f"k{i}") for i in range(15)}
    assert mine.isdisjoint(theirs) and mine | theirs <= set(range(20_000, 20_040))
    one.save()
    two.save()
    # A mesh whose state directory is gone (and whose claims are old) gives its ports back.
    import os
    import shutil

    shutil.rmtree(tmp_path / "a")
    for claim in (tmp_path / "claims").iterdir():
        os.utime(claim, (0, 0))
    three = PortBook(tmp_path / "c-ports.json")
    got = {three.assign(f"k{i}") for i in range(20)}
    assert got.isdisjoint(theirs) and got & mine
