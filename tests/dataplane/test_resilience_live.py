"""Retries, timeouts, faults, circuit breaking and outlier ejection against real failing apps."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshctl.contract import (
    AbortFault,
    CompiledBackend,
    CompiledBackoff,
    CompiledConnectionPool,
    CompiledFault,
    CompiledHealthCheck,
    CompiledOutlierDetection,
    CompiledRetryBudget,
    CompiledRouteRule,
    CompiledStringMatch,
    CompiledTrafficPolicy,
    DelayFault,
    RequestMatch,
    RetryPolicy,
)
from tests.dataplane.conftest import fire, get
from tests.support.configs import destination, service_config
from tests.support.procs import App, Sidecar, bindings_for, free_port, start_app, start_sidecar

_revisions = itertools.count(1)
RETRY_5XX = RetryPolicy(attempts=3, on=("5xx", "connect-failure"), backoff=CompiledBackoff(base_ms=1, max_ms=5))


@pytest.fixture(scope="module")
def flaky() -> Iterator[dict[str, App]]:
    """Two instances of `orders` v1 (one of them gets killed) and a spare."""
    started = {name: start_app(name) for name in ("o1", "o2")}
    yield started
    for app in started.values():
        app.stop()


@pytest.fixture(scope="module")
def caller(tmp_path_factory: pytest.TempPathFactory, flaky: dict[str, App]) -> Iterator[Sidecar]:
    bindings = bindings_for(
        inbound=False, endpoints={"orders": {"v1": (flaky["o1"].address, flaky["o2"].address)}}
    )
    config = service_config("checkout", (destination("orders"),), revision="r0")
    sc = start_sidecar(Path(tmp_path_factory.mktemp("caller")), config, bindings)
    yield sc
    assert sc.stop() == 0


def install(sc: Sidecar, *rules: CompiledRouteRule, policy: CompiledTrafficPolicy | None = None,
            bindings_endpoints: dict[str, tuple[str, ...]] | None = None,
            budget: CompiledRetryBudget | None = None) -> None:
    if bindings_endpoints is not None:
        sc.bindings = sc.bindings.model_copy(update={"endpoints": {"orders": bindings_endpoints}})
        from meshctl.contract import dump_json
        from tests.support.procs import write_atomic

        write_atomic(sc.bindings_path, dump_json(sc.bindings))
    sc.reload(service_config(
        "checkout", (destination("orders", ("v1",), rules or None, policy),),
        revision=f"res-{next(_revisions)}", retry_budget=budget or CompiledRetryBudget(),
    ))


def rule(name: str = "default", **fields: object) -> CompiledRouteRule:
    return CompiledRouteRule(name=name, backends=(CompiledBackend(service="orders", version="v1", weight=100),),
                     **fields)  # type: ignore[arg-type]


def test_retries_hide_a_backend_failing_half_the_requests(caller: Sidecar,
                                                          flaky: dict[str, App]) -> None:
    for app in flaky.values():
        app.configure(fail_percent=50, reset=True)
    try:
        # Independent 50% failures: 8 retries leave 0.2% failing. Half of all requests
        # fail, so retrying them needs more than the default 20% budget.
        retries = RetryPolicy(attempts=8, on=("5xx",), backoff=CompiledBackoff(base_ms=1, max_ms=5))
        install(caller, rule(retries=retries), budget=CompiledRetryBudget(percent=100))
        results = fire(get("http://orders/buy", 400), caller.outbound_proxy, concurrency=8)
        ok = sum(r.status == 200 for r in results) / len(results)
        assert ok >= 0.99, ok
        served = sum(app.stats()["requests"] for app in flaky.values())
        assert served > len(results) * 1.5  # the failures were really retried
        # A POST is not retried: about half fail, and each reached an app once.
        for app in flaky.values():
            app.configure(reset=True)
        posts = fire([("POST", "http://orders/buy", {}, b"{}")] * 200, caller.outbound_proxy,
                     concurrency=8)
        failed = sum(r.status == 503 for r in posts)
        assert 60 <= failed <= 140, failed
        assert sum(app.stats()["requests"] for app in flaky.values()) == len(posts)
        retried = [line for line in caller.metrics().splitlines()
                   if line.startswith("meshctl_retries_total")]
        assert retried and float(retried[0].split()[-1]) > 0
    finally:
        for app in flaky.values():
            app.configure(fail_percent=0)


def test_a_retry_goes_to_another_endpoint(caller: Sidecar, flaky: dict[str, App]) -> None:
    """One of two endpoints always fails: one retry on the other one hides it entirely."""
    flaky["o1"].configure(fail_percent=100, reset=True)
    try:
        retries = RetryPolicy(attempts=1, on=("5xx",), backoff=CompiledBackoff(base_ms=1, max_ms=2))
        install(caller, rule(retries=retries), budget=CompiledRetryBudget(percent=100))
        results = fire(get("http://orders/other", 300), caller.outbound_proxy, concurrency=8)
        assert all(r.status == 200 and r.app == "o2" for r in results)
        assert flaky["o1"].stats()["requests"] > 50  # it was tried, and failed over
    finally:
        flaky["o1"].configure(fail_percent=0)


def test_default_retry_budget_caps_retries(caller: Sidecar, flaky: dict[str, App]) -> None:
    for app in flaky.values():
        app.configure(fail_percent=100, reset=True)
    try:
        install(caller, rule(retries=RETRY_5XX), budget=CompiledRetryBudget(percent=20, min_per_second=5))
        results = fire(get("http://orders/b", 200), caller.outbound_proxy, concurrency=8)
        assert all(r.status == 503 for r in results)
        served = sum(app.stats()["requests"] for app in flaky.values())
        # Without a budget every request would be tried 4 times (800 upstream requests).
        assert served < len(results) * 2, served
    finally:
        for app in flaky.values():
            app.configure(fail_percent=0)


def test_exhausted_retries_are_flagged_urx(caller: Sidecar, flaky: dict[str, App]) -> None:
    install(caller, rule(retries=RETRY_5XX), budget=CompiledRetryBudget(percent=100))
    result = fire(get("http://orders/x?status=503"), caller.outbound_proxy)[0]
    assert result.status == 503 and result.flags == "URX"
    assert caller.access_log()[-1]["attempts"] == 4


def test_route_timeout_gives_504_ut(caller: Sidecar) -> None:
    install(caller, rule(timeout_ms=300))
    result = fire(get("http://orders/slow?delay_ms=3000"), caller.outbound_proxy)[0]
    assert (result.status, result.flags) == (504, "UT")
    assert result.elapsed < 2.0


def test_abort_percentage_holds_and_is_not_retried(caller: Sidecar,
                                                   flaky: dict[str, App]) -> None:
    for app in flaky.values():
        app.configure(reset=True)
    install(caller, rule(fault=CompiledFault(abort=AbortFault(status=503, percent=30)),
                         retries=RETRY_5XX))
    results = fire(get("http://orders/a", 1000), caller.outbound_proxy)
    aborted = [r for r in results if r.status == 503]
    assert all(r.flags == "FI" for r in aborted)
    assert 25.0 <= len(aborted) / len(results) * 100 <= 35.0, len(aborted)
    # Aborted requests never reached an app (no retry of an injected abort).
    served = sum(app.stats()["requests"] for app in flaky.values())
    assert served == len(results) - len(aborted)


def test_delay_counts_against_the_caller_timeout_without_blocking_others(
    tmp_path: Path, caller: Sidecar, flaky: dict[str, App]
) -> None:
    """client -> sidecar (route `front`, timeout 1s) -> front app -> same sidecar (route
    `orders` with a 7 s delay on /slow) -> orders. The caller's timeout fires at ~1 s."""
    front = start_app("front", proxy=caller.outbound_proxy)
    try:
        slow = rule("slow", matches=(RequestMatch(path=CompiledStringMatch(prefix="/slow")),),
                    fault=CompiledFault(delay=DelayFault(fixed_ms=7000, percent=100)))
        front_rule = CompiledRouteRule(name="front", timeout_ms=1000,
                               backends=(CompiledBackend(service="front", weight=100),))
        caller.bindings = caller.bindings.model_copy(update={"endpoints": {
            "orders": {"v1": (flaky["o1"].address, flaky["o2"].address)},
            "front": {"v1": (front.address,)},
        }})
        from meshctl.contract import dump_json
        from tests.support.procs import write_atomic

        write_atomic(caller.bindings_path, dump_json(caller.bindings))
        caller.reload(service_config("checkout", (
            destination("orders", ("v1",), (slow, rule())),
            destination("front", ("v1",), (front_rule,)),
        ), revision=f"res-{next(_revisions)}"))
        reqs = get("http://front/__call?to=http://orders/slow") + get("http://orders/fast", 20)
        results = fire(reqs, caller.outbound_proxy, concurrency=8)
        delayed, others = results[0], results[1:]
        assert (delayed.status, delayed.flags) == (504, "UT")
        assert 0.9 <= delayed.elapsed < 3.0, delayed.elapsed
        assert all(r.status == 200 and r.elapsed < 2.5 for r in others)  # not held by the 7 s
    finally:
        front.stop()


def test_circuit_breaker_overflow_gives_503_uo(caller: Sidecar) -> None:
    install(caller, rule(), policy=CompiledTrafficPolicy(
        connection_pool=CompiledConnectionPool(max_connections=1, max_pending_requests=1)))
    results = fire(get("http://orders/cb?delay_ms=1500", 6), caller.outbound_proxy, concurrency=6)
    overflow = [r for r in results if r.status == 503]
    assert all(r.flags == "UO" for r in overflow)
    assert len(overflow) >= 3 and sum(r.status == 200 for r in results) >= 2


def test_killed_endpoint_is_ejected_and_traffic_continues(caller: Sidecar, tmp_path: Path) -> None:
    doomed, steady = start_app("doomed"), start_app("steady")
    try:
        install(
            caller,
            rule(retries=RetryPolicy(attempts=2, on=("connect-failure", "reset"),
                                     backoff=CompiledBackoff(base_ms=1, max_ms=2))),
            policy=CompiledTrafficPolicy(outlier_detection=CompiledOutlierDetection(
                consecutive_5xx=2, base_ejection_time_ms=30_000, max_ejection_percent=50)),
            bindings_endpoints={"v1": (doomed.address, steady.address)},
        )
        assert {r.app for r in fire(get("http://orders/k", 20), caller.outbound_proxy)} == {
            "doomed", "steady"}
        doomed.stop()
        results = fire(get("http://orders/k", 100), caller.outbound_proxy, concurrency=4)
        assert all(r.status == 200 and r.app == "steady" for r in results)
        tail = caller.access_log()[-50:]
        assert all(e["attempts"] == 1 for e in tail), "ejected endpoint still tried"
        assert "meshctl_outlier_ejections_total{" in caller.metrics()
    finally:
        doomed.stop()
        steady.stop()


def test_a_lone_ejected_endpoint_is_still_tried_in_panic(caller: Sidecar) -> None:
    """As Envoy below its panic threshold: with no endpoint available, the ejected one is
    tried rather than none (503 UF, not UH)."""
    dead = f"127.0.0.1:{free_port()}"
    install(
        caller, rule(),
        policy=CompiledTrafficPolicy(outlier_detection=CompiledOutlierDetection(
            consecutive_5xx=1, base_ejection_time_ms=30_000, max_ejection_percent=100)),
        bindings_endpoints={"v1": (dead,)},
    )
    first, second = fire(get("http://orders/u", 2), caller.outbound_proxy, concurrency=1)
    assert (first.status, first.flags) == (503, "UF")
    assert (second.status, second.flags) == (503, "UF")
    assert b"127.0.0.1" not in first.body + second.body



def test_active_health_checks_take_an_endpoint_out_and_back(
    caller: Sidecar, flaky: dict[str, App]
) -> None:
    check = CompiledHealthCheck(path="/healthz", interval_ms=100, timeout_ms=500,
                        unhealthy_threshold=2, healthy_threshold=1)
    install(caller, rule(), policy=CompiledTrafficPolicy(health_check=check),
            bindings_endpoints={"v1": (flaky["o1"].address, flaky["o2"].address)})
    flaky["o1"].configure(healthy=False)
    try:
        deadline = time.monotonic() + 10
        while {r.app for r in fire(get("http://orders/h", 10), caller.outbound_proxy)} != {"o2"}:
            assert time.monotonic() < deadline, "unhealthy endpoint still receives traffic"
            time.sleep(0.1)
        assert flaky["o1"].stats()["paths"].get("/healthz", 0) >= 2
    finally:
        flaky["o1"].configure(healthy=True)
    deadline = time.monotonic() + 10
    while "o1" not in {r.app for r in fire(get("http://orders/h", 10), caller.outbound_proxy)}:
        assert time.monotonic() < deadline, "recovered endpoint never came back"
        time.sleep(0.1)
