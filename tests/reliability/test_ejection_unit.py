"""Outlier ejection as Envoy bounds it, panic, health checks ending ejections, fallback to
another backend, and a far sidecar's "no app" 503 retried as a connect failure."""

from __future__ import annotations

from meshctl.contract import (
    CompiledBackend,
    CompiledHealthCheck,
    CompiledOutlierDetection,
    CompiledRetryBudget,
    LoadBalancer,
)
from proxy_addon.endpoints import EndpointSet, healthy_backend
from proxy_addon.health import record_probe
from proxy_addon.retry import RetryBudget, app_unreached

OD = CompiledOutlierDetection(consecutive_5xx=1, base_ejection_time_ms=30_000, max_ejection_percent=50)


def test_the_only_endpoint_is_never_ejected_at_50_percent() -> None:
    """The defect: one instance of reviews v1 crashed for 0.7 s and stayed ejected for 30 s."""
    eps = EndpointSet("reviews")
    only = eps.get("a:1", "v1")
    for _ in range(10):
        assert not eps.record(only, True, 0.0, OD)
    assert only.available(0.0)


def test_at_most_max_ejection_percent_of_the_destination_is_ejected() -> None:
    eps = EndpointSet("reviews")
    a, b, c, d = (eps.get(f"{n}:1", "v1") for n in "abcd")
    assert eps.record(a, True, 0.0, OD) and eps.record(b, True, 0.0, OD)
    assert not eps.record(c, True, 0.0, OD) and not eps.record(d, True, 0.0, OD)
    assert {ep.address for ep in eps.ejected(1.0)} == {"a:1", "b:1"}


def test_below_the_panic_threshold_every_endpoint_is_a_choice() -> None:
    eps = EndpointSet("reviews")
    od = CompiledOutlierDetection(consecutive_5xx=1, base_ejection_time_ms=30_000, max_ejection_percent=100)
    a, b, c = (eps.get(f"{n}:1", "v1") for n in "abc")
    assert eps.record(a, True, 0.0, od) and eps.record(b, True, 0.0, od)
    picks = {eps.pick([a, b, c], LoadBalancer(), 1.0, set()).address for _ in range(30)}  # type: ignore[union-attr]
    assert picks == {"a:1", "b:1", "c:1"}  # 1 of 3 available < 50%: panic
    assert eps.pick([a, b], LoadBalancer(), 1.0, set()) is not None  # never "no endpoint"


def test_a_passing_health_check_ends_an_ejection() -> None:
    eps = EndpointSet("reviews")
    a, _ = eps.get("a:1", "v1"), eps.get("b:1", "v1")
    assert eps.record(a, True, 0.0, OD)
    assert not a.available(1.0)
    assert record_probe(a, True, CompiledHealthCheck(path="/healthz"))
    assert a.available(1.0)


def test_a_version_without_available_endpoints_falls_back_to_another_backend() -> None:
    v1 = CompiledBackend(service="reviews", version="v1", weight=90)
    v2 = CompiledBackend(service="reviews", version="v2", weight=10)
    down = {"v1"}

    def has_available(b: CompiledBackend) -> bool:
        return b.version not in down

    assert healthy_backend((v1, v2), v1, has_available, "jason") is v2
    assert healthy_backend((v1, v2), v1, has_available, None) is v2
    down.clear()
    assert healthy_backend((v1, v2), v1, has_available, "jason") is v1  # back when v1 is
    down.update({"v1", "v2"})
    assert healthy_backend((v1, v2), v1, has_available, None) is v1  # nothing better: panic


def test_a_sidecars_no_app_503_is_a_connect_failure() -> None:
    assert app_unreached(503, [(b"X-Mesh-Response-Flags", b"UF")])
    assert app_unreached(503, [(b"x-mesh-response-flags", b"UH")])
    assert not app_unreached(503, [(b"x-mesh-response-flags", b"UO")])  # overflow: app is busy
    assert not app_unreached(503, [])  # the app's own 503
    assert not app_unreached(502, [(b"x-mesh-response-flags", b"UF")])


def test_retry_budget_always_allows_a_few_concurrent_retries() -> None:
    budget = RetryBudget(CompiledRetryBudget(percent=20, min_per_second=0))
    budget.requests_in_flight = 1
    assert budget.try_acquire(0.0) and budget.try_acquire(0.0) and budget.try_acquire(0.0)
    assert not budget.try_acquire(0.0)
    budget.release()
    assert budget.try_acquire(0.0)
