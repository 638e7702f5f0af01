"""The same request-path semantics through a real sidecar to real apps."""

from __future__ import annotations

import itertools

from meshctl.contract import (
    CompiledBackend,
    CompiledBackoff,
    CompiledHeaderOps,
    CompiledRedirect,
    CompiledRewrite,
    CompiledRouteRule,
    CompiledStringMatch,
    RequestMatch,
    RetryPolicy,
)
from tests.dataplane.conftest import fire, get
from tests.support.configs import destination, service_config
from tests.support.procs import App, Sidecar, bindings_for, free_port

_revisions = itertools.count(1)


def install(sc: Sidecar, *rules: CompiledRouteRule) -> None:
    config = service_config("productpage", (destination("reviews", ("v1", "v2"), rules),),
                            revision=f"request-path-{next(_revisions)}")
    sc.reload(config)


def to(version: str, **kw: object) -> tuple[CompiledBackend, ...]:
    return (CompiledBackend(service="reviews", version=version, weight=100, **kw),)  # type: ignore[arg-type]


def test_exact_match_rewrite_full_path_and_backend_headers(sidecar: Sidecar) -> None:
    install(
        sidecar,
        CompiledRouteRule(name="exact", matches=(RequestMatch(path=CompiledStringMatch(exact="/old")),),
                          rewrite=CompiledRewrite(path_prefix="/new"), backends=to("v1")),
        CompiledRouteRule(name="segment", matches=(RequestMatch(path=CompiledStringMatch(segment_prefix="/v2")),),
                          rewrite=CompiledRewrite(full_path="/all"),
                          backends=to("v2", request_headers=CompiledHeaderOps(set={"x-backend": "two"}),
                                      response_headers=CompiledHeaderOps(add={"x-picked": "v2"}))),
        CompiledRouteRule(name="rest", backends=to("v1")),
    )
    exact, segment, not_segment = fire(
        get("http://reviews/old?q=1") + get("http://reviews/v2/x") + get("http://reviews/v2x"),
        sidecar.outbound_proxy, concurrency=1)
    assert exact.json()["path"] == "/new?q=1"
    assert (segment.app, segment.json()["path"]) == ("v2", "/all")
    assert segment.json()["headers"]["x-backend"] == "two" and segment.headers["x-picked"] == "v2"
    assert (not_segment.app, not_segment.json()["path"]) == ("v1", "/v2x")


def test_https_redirect_and_caller_version_match(sidecar: Sidecar) -> None:
    # The fixture's sidecar is version v1 of productpage.
    install(
        sidecar,
        CompiledRouteRule(name="https", matches=(RequestMatch(path=CompiledStringMatch(exact="/login")),),
                          redirect=CompiledRedirect(scheme="https", port=8443, status=308)),
        CompiledRouteRule(name="from-v2", matches=(RequestMatch(source_versions=("v2",)),), backends=to("v2")),
        CompiledRouteRule(name="from-v1", matches=(RequestMatch(source_versions=("v1",)),),
                          backends=to("v1", request_headers=CompiledHeaderOps(set={"x-rule": "from-v1"}))),
    )
    login, other = fire(get("http://reviews/login") + get("http://reviews/r"), sidecar.outbound_proxy,
                        concurrency=1)
    assert (login.status, login.headers["Location"]) == (308, "https://reviews:8443/login")
    assert other.app == "v1" and other.json()["headers"]["x-rule"] == "from-v1"


def test_connect_failure_is_retried_for_a_post(sidecar: Sidecar, apps: dict[str, App]) -> None:
    dead = f"127.0.0.1:{free_port()}"
    old = sidecar.bindings
    sidecar.reload(bindings=bindings_for(
        inbound=False, endpoints={"reviews": {"v1": (dead, apps["v1"].address), "v2": (dead,)}}
    ).model_copy(update={"listeners": old.listeners}))
    try:
        retry = RetryPolicy(attempts=2, on=("connect-failure",), backoff=CompiledBackoff(base_ms=1, max_ms=2))
        install(sidecar, CompiledRouteRule(name="v1", backends=to("v1"), retries=retry),)
        posts = fire([("POST", "http://reviews/orders", {}, b"{}")] * 6, sidecar.outbound_proxy, concurrency=1)
        assert [r.status for r in posts] == [200] * 6, [(r.status, r.flags) for r in posts]
        # A POST that reached the app and got 503 is not retried (it may have taken effect).
        install(sidecar, CompiledRouteRule(name="v1", backends=to("v1"), retries=retry.model_copy(
            update={"on": ("connect-failure", "5xx")})))
        before = apps["v1"].stats()["requests"]
        [failed] = fire([("POST", "http://reviews/x?status=503", {}, b"{}")], sidecar.outbound_proxy)
        assert failed.status == 503, (failed.flags, failed.body)
        assert apps["v1"].stats()["requests"] - before == 1
    finally:
        sidecar.reload(bindings=old)
