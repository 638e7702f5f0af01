"""Imported policy through real sidecars to real apps: what bookinfo's Istio and Gateway API
samples do (a header match to v2, a 50/50 split, a delay, an abort, a mirror, a circuit breaker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meshctl.contract import SidecarConfig
from meshctl.pipeline import build
from meshctl.sources.worktree import read_worktree
from tests.conftest import run_meshctl
from tests.dataplane.conftest import fire, get
from tests.support.procs import App, Sidecar, bindings_for, start_app, start_sidecar

INPUTS = Path(__file__).resolve().parent / "inputs"


def compiled(source: str, tmp: Path) -> dict[str, SidecarConfig]:
    out = tmp / source
    result = run_meshctl("import", source, str(INPUTS / source), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    built = build(read_worktree(out))
    assert built.compiled is not None, built.diagnostics
    # The apps here hold no mesh certificates: the routing under test does not depend on mTLS.
    return {k: v.model_copy(update={"mtls": "disabled"}) for k, v in built.compiled.configs.items()}


@pytest.fixture(scope="module")
def ratings_app() -> Iterator[App]:
    app = start_app("ratings")
    yield app
    app.stop()


@pytest.fixture(scope="module")
def istio(tmp_path_factory: pytest.TempPathFactory, apps: dict[str, App],
          ratings_app: App) -> Iterator[dict[str, Sidecar]]:
    tmp = tmp_path_factory.mktemp("imported")
    configs = compiled("istio", tmp)
    endpoints = {"reviews": {"v1": (apps["v1"].address,), "v2": (apps["v2"].address,)},
                 "ratings": {"v1": (ratings_app.address,)}}
    started = {name: start_sidecar(tmp / name, configs[name], bindings_for(inbound=False, endpoints=endpoints))
               for name in ("productpage", "reviews")}
    yield started
    for sc in started.values():
        assert sc.stop() == 0, sc.stderr()[-2000:]


def test_istio_header_match_split_and_mirror(istio: dict[str, Sidecar], ratings_app: App) -> None:
    proxy = istio["productpage"].outbound_proxy
    jason = fire(get("http://reviews/reviews/1", 20, {"end-user": "jason"}), proxy)
    assert {r.app for r in jason} == {"v2"}
    before = ratings_app.stats()["requests"]
    split = fire(get("http://reviews/reviews/1", 400), proxy)
    assert all(r.status == 200 for r in split)
    share = sum(r.app == "v2" for r in split) / len(split)
    assert 0.40 <= share <= 0.60, share
    assert {r.headers.get("x-canary") for r in split if r.app == "v2"} == {"v2"}  # the backend's header
    assert all(r.json()["headers"].get("x-split") == "yes" for r in split)
    # mirrorPercentage 100: every split request is also sent to ratings (asynchronously).
    assert ratings_app.stats()["requests"] - before >= 390


def test_istio_delay_abort_and_circuit_breaker(istio: dict[str, Sidecar]) -> None:
    proxy = istio["reviews"].outbound_proxy
    # The 7 s delay, measured without waiting for it: the request is still unanswered after 0.5 s.
    [delayed] = fire(get("http://ratings/ratings/1", 1, {"end-user": "jason"}), proxy, timeout=0.5)
    [plain] = fire(get("http://ratings/ratings/1"), proxy)
    assert delayed.status == -1 and delayed.elapsed >= 0.45
    assert plain.status == 200 and plain.elapsed < 0.5
    [aborted] = fire(get("http://ratings/ratings/1", 1, {"end-user": "bill"}), proxy)
    assert (aborted.status, aborted.flags) == (500, "FI")
    # maxConnections 1, http1MaxPendingRequests 1: a burst of slow requests overflows.
    burst = fire(get("http://ratings/ratings/1?delay_ms=300", 12), proxy, concurrency=12)
    flags = [r.flags for r in burst if r.status == 503]
    assert flags and set(flags) == {"UO"}, [(r.status, r.flags) for r in burst]
    assert any(r.status == 200 for r in burst)


def test_gateway_api_split_header_match_and_rewrite(
    tmp_path_factory: pytest.TempPathFactory, apps: dict[str, App]
) -> None:
    tmp = tmp_path_factory.mktemp("gateway-api")
    configs = compiled("gateway-api", tmp)
    endpoints = {"reviews": {"v1": (apps["v1"].address,), "v2": (apps["v2"].address,)}}
    sc = start_sidecar(tmp / "pp", configs["productpage"], bindings_for(inbound=False, endpoints=endpoints))
    try:
        split = fire(get("http://reviews/reviews/1", 300), sc.outbound_proxy)
        share = sum(r.app == "v2" for r in split) / len(split)
        assert 0.38 <= share <= 0.62, share
        [jason] = fire(get("http://reviews/reviews/1", 1, {"end-user": "jason"}), sc.outbound_proxy)
        assert jason.app == "v2" and jason.json()["headers"]["x-variant"] == "v2"
        under, beside = fire(get("http://reviews/v2/7") + get("http://reviews/v2x"), sc.outbound_proxy)
        assert (under.app, under.json()["path"]) == ("v2", "/reviews/7")
        assert beside.json()["path"] == "/v2x"
    finally:
        assert sc.stop() == 0, sc.stderr()[-2000:]
