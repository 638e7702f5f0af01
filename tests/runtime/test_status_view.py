"""The A/B view of `meshctl status`: traffic per service version, and each version's share."""

from __future__ import annotations

import json

import pytest

from meshctl.cli.status import status_json, status_text, version_rows
from meshctl.runtime.metrics import Snapshot, window
from meshctl.runtime.observe import SidecarStatus
from meshctl.runtime.plan import Plan, SidecarRecord
from meshctl.runtime.topology import Topology


def sidecar(instance: str, version: str, requests: float, errors: float, slow: float) -> SidecarStatus:
    """`requests` in 2 s, of which `slow` took between 25 and 50 ms and the rest under 10 ms."""
    service = instance.split("-")[0]
    record = SidecarRecord(sidecar=service, instance=instance, process=f"{instance}.sidecar",
                           service=service, version=version, admin_port=1, inbound_port=2,
                           app_process=instance)
    buckets = {10.0: requests - slow, 25.0: requests - slow, 50.0: requests, float("inf"): requests}
    traffic = window(Snapshot(at=0.0), Snapshot(at=2.0, requests=requests, errors=errors, buckets=buckets))
    return SidecarStatus(record=record, revision="abc", healthy=True, restarts=0, status="ready",
                         traffic=traffic)


STATUSES = [
    sidecar("reviews-v1-0", "v1", 60, 0, 0),
    sidecar("reviews-v1-1", "v1", 40, 2, 2),
    sidecar("reviews-v2-0", "v2", 100, 0, 0),
]


def test_versions_pool_their_instances_and_show_their_share() -> None:
    rows = {r["version"]: r for r in version_rows(STATUSES)}
    assert (rows["v1"]["requests"], rows["v1"]["rps"], rows["v1"]["error_rate"]) == (100, 50.0, 2.0)
    assert rows["v1"]["instances"] == 2
    # 2 slow requests of v1's 100: its p99 is in (25, 50] ms, its p50 under 10 ms, while the
    # instance that served them has a p99 of 45 ms on its own (2 of its 40)
    assert rows["v1"]["p99_ms"] == 37.5 and rows["v1"]["p50_ms"] == 5.1
    assert STATUSES[1].traffic is not None and STATUSES[1].traffic.p99_ms == pytest.approx(45.0)
    assert (rows["v1"]["share"], rows["v2"]["share"]) == (50.0, 50.0)


def test_json_and_text_carry_the_same_view() -> None:
    plan = Plan(policy_dir="-", revision="abc", topology=Topology((), ()))
    data = json.loads(status_json(plan, "abc", STATUSES))
    assert data["revision"] == "abc"
    assert {s["instance"] for s in data["sidecars"]} == {"reviews-v1-0", "reviews-v1-1", "reviews-v2-0"}
    assert {s["rps"] for s in data["sidecars"]} == {30.0, 20.0, 50.0}
    text = status_text(plan, "abc", STATUSES)
    assert "(2 instances)" in text and "50.0%" in text
