"""Routing through a real sidecar to real apps: matches, splits, sticky users, direct answers."""

from __future__ import annotations

import itertools
from collections import Counter

from meshctl.contract import (
    CompiledDirectResponse,
    CompiledHeaderOps,
    CompiledRedirect,
    CompiledRewrite,
    CompiledRouteRule,
    CompiledSticky,
    CompiledStickyCookie,
    CompiledStringMatch,
    CompiledTrafficPolicy,
    LoadBalancer,
    RequestMatch,
)
from tests.dataplane.conftest import fire, get
from tests.support.configs import destination, service_config, split
from tests.support.procs import App, Sidecar

_revisions = itertools.count(1)


def install(sidecar: Sidecar, *rules: CompiledRouteRule, **fields: object) -> None:
    config = service_config(
        "productpage",
        (destination("reviews", ("v1", "v2"), rules or None),),
        revision=f"routing-{next(_revisions)}",
        **fields,  # type: ignore[arg-type]
    )
    sidecar.reload(config)


def test_ninety_ten_split_holds_over_2000_requests(sidecar: Sidecar) -> None:
    install(sidecar, split("reviews", {"v1": 90, "v2": 10}))
    results = fire(get("http://reviews/split", 2000), sidecar.outbound_proxy)
    assert all(r.status == 200 for r in results), Counter(r.status for r in results)
    share_v2 = sum(r.app == "v2" for r in results) / len(results) * 100
    assert 7.0 <= share_v2 <= 13.0, share_v2


def test_sticky_header_users_keep_one_variant(sidecar: Sidecar) -> None:
    install(sidecar, split("reviews", {"v1": 50, "v2": 50}, sticky=CompiledSticky(header="x-user")))
    users = [f"user-{i}" for i in range(60)]
    reqs = [r for u in users for r in get("http://reviews/s", 8, {"x-user": u})]
    results = fire(reqs, sidecar.outbound_proxy)
    seen: dict[str, set[str | None]] = {}
    for (_, _, headers, _), result in zip(reqs, results, strict=True):
        assert result.status == 200
        seen.setdefault(headers["x-user"], set()).add(result.app)
    assert all(len(v) == 1 for v in seen.values()), seen
    per_variant = Counter(next(iter(v)) for v in seen.values())
    assert per_variant["v1"] >= 15 and per_variant["v2"] >= 15, per_variant  # both in use


def test_sticky_weight_change_moves_only_needed_users(sidecar: Sidecar) -> None:
    users = [f"u{i}" for i in range(300)]
    reqs = [get("http://reviews/w", 1, {"x-user": u})[0] for u in users]
    install(sidecar, split("reviews", {"v1": 80, "v2": 20}, sticky=CompiledSticky(header="x-user")))
    before = [r.app for r in fire(reqs, sidecar.outbound_proxy)]
    install(sidecar, split("reviews", {"v1": 70, "v2": 30}, sticky=CompiledSticky(header="x-user")))
    after = [r.app for r in fire(reqs, sidecar.outbound_proxy)]
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    # Only v1 -> v2 moves (about 10% of users); nobody on v2 is sent back.
    assert all(b == "v1" and a == "v2" for b, a in moved), moved
    assert len(moved) <= 0.2 * len(users), len(moved)


def test_sticky_cookie_is_set_once_and_then_honoured(sidecar: Sidecar) -> None:
    sticky = CompiledSticky(cookie=CompiledStickyCookie(name="ab", ttl_ms=3_600_000))
    install(sidecar, split("reviews", {"v1": 50, "v2": 50}, sticky=sticky))
    first = fire(get("http://reviews/c"), sidecar.outbound_proxy)[0]
    cookie = first.headers.get("Set-Cookie", "")
    assert cookie.startswith("ab=") and "Max-Age=3600" in cookie
    value = cookie.split(";")[0]
    again = fire(get("http://reviews/c", 20, {"cookie": value}), sidecar.outbound_proxy)
    assert {r.app for r in again} == {first.app}
    assert all("Set-Cookie" not in r.headers for r in again)


def test_hash_cookie_load_balancer_gives_a_new_client_a_cookie_and_keeps_it_on_one_endpoint(
    sidecar: Sidecar,
) -> None:
    """`loadBalancer: {hash: {cookie: ...}}` over every version's endpoints, as Istio's httpCookie."""
    lb = CompiledTrafficPolicy(load_balancer=LoadBalancer(
        policy="hash", hash_cookie=CompiledStickyCookie(name="lb", ttl_ms=60_000)))
    config = service_config("productpage", (destination("reviews", ("v1", "v2"), traffic_policy=lb),),
                            revision=f"routing-{next(_revisions)}")
    sidecar.reload(config)
    # one fire() per request: each is a new client with an empty cookie jar
    firsts = [fire(get("http://reviews/lb"), sidecar.outbound_proxy)[0] for _ in range(16)]
    cookies = [r.headers.get("Set-Cookie", "") for r in firsts]
    assert all(c.startswith("lb=") and "Max-Age=60" in c for c in cookies), cookies
    assert len({c.split(";")[0] for c in cookies}) == 16  # one new key per new client
    assert {r.app for r in firsts} == {"v1", "v2"}  # the keys spread over both endpoints
    for first, cookie in zip(firsts[:4], cookies[:4], strict=True):
        again = fire(get("http://reviews/lb", 10, {"cookie": cookie.split(";")[0]}), sidecar.outbound_proxy)
        assert {r.app for r in again} == {first.app}
        assert all("Set-Cookie" not in r.headers for r in again)


def test_matches_choose_rules_in_order_and_unmatched_gets_404_nr(sidecar: Sidecar) -> None:
    to = {"v1": "reviews", "v2": "reviews"}
    install(
        sidecar,
        split(to["v2"], {"v2": 100}, name="beta",
              matches=(RequestMatch(headers={"end-user": CompiledStringMatch(exact="jason")}),
                       RequestMatch(query={"beta": CompiledStringMatch(exact="1")}))),
        split("reviews", {"v1": 100}, name="api",
              matches=(RequestMatch(path=CompiledStringMatch(prefix="/api"), methods=("GET",)),)),
        split("reviews", {"v2": 100}, name="regex",
              matches=(RequestMatch(path=CompiledStringMatch(regex="/items/[0-9]+")),)),
    )
    proxy = sidecar.outbound_proxy
    cases = [
        (get("http://reviews/api/x", 1, {"end-user": "jason"})[0], 200, "v2"),
        (get("http://reviews/other?beta=1")[0], 200, "v2"),
        (get("http://reviews/api/x")[0], 200, "v1"),
        (("POST", "http://reviews/api/x", {}, b"{}"), 404, None),
        (get("http://reviews/items/42")[0], 200, "v2"),
        (get("http://reviews/items/4x")[0], 404, None),
    ]
    results = fire([c[0] for c in cases], proxy, concurrency=1)
    for (req, status, app), result in zip(cases, results, strict=True):
        assert (result.status, result.app) == (status, app), (req, result)
        if status == 404:
            assert result.flags == "NR" and result.json()["flags"] == "NR"
    rules = [e["route_name"] for e in sidecar.access_log()[-len(cases):]]
    assert rules == ["beta", "beta", "api", None, "regex", None]


def test_unknown_host_registry_only_gets_502_nr(sidecar: Sidecar) -> None:
    install(sidecar, split("reviews", {"v1": 100}))
    result = fire(get("http://unknown-service/x"), sidecar.outbound_proxy)[0]
    assert (result.status, result.flags) == (502, "NR")
    assert b"127.0.0.1" not in result.body


def test_denied_service_gets_403_rbac(sidecar: Sidecar) -> None:
    config = service_config(
        "productpage", (destination("reviews", ("v1", "v2")),), revision="denied",
        denied=("ratings",),
    )
    sidecar.reload(config)
    result = fire(get("http://ratings/x"), sidecar.outbound_proxy)[0]
    assert (result.status, result.flags) == (403, "RBAC")


def test_rewrite_headers_redirect_and_direct_response(sidecar: Sidecar) -> None:
    install(
        sidecar,
        CompiledRouteRule(name="moved", matches=(RequestMatch(path=CompiledStringMatch(prefix="/old")),),
                  redirect=CompiledRedirect(path="/new", status=301)),
        CompiledRouteRule(name="teapot", matches=(RequestMatch(path=CompiledStringMatch(exact="/tea")),),
                  respond=CompiledDirectResponse(status=418, body="short and stout",
                                         headers={"x-kind": "teapot"})),
        split("reviews", {"v1": 100}, name="rewritten",
              matches=(RequestMatch(path=CompiledStringMatch(prefix="/v1api")),),
              rewrite=CompiledRewrite(path_prefix="/api", host="reviews.internal"),
              request_headers=CompiledHeaderOps(set={"x-added": "yes"}, remove=("x-debug",)),
              response_headers=CompiledHeaderOps(set={"x-served-by": "mesh"})),
    )
    proxy = sidecar.outbound_proxy
    moved, tea, rewritten = fire(
        [get("http://reviews/old/page")[0], get("http://reviews/tea")[0],
         get("http://reviews/v1api/items?q=1", 1, {"x-debug": "1"})[0]],
        proxy, concurrency=1,
    )
    assert moved.status == 301 and moved.headers["Location"] == "http://reviews/new"
    assert (tea.status, tea.body, tea.headers["x-kind"]) == (418, b"short and stout", "teapot")
    seen = rewritten.json()
    assert seen["path"] == "/api/items?q=1"
    assert seen["headers"]["Host"] == "reviews.internal"
    assert seen["headers"]["x-added"] == "yes" and "x-debug" not in seen["headers"]
    assert rewritten.headers["x-served-by"] == "mesh"


def test_traceparent_is_propagated_or_created(sidecar: Sidecar) -> None:
    install(sidecar, split("reviews", {"v1": 100}))
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    kept, created = fire(
        [get("http://reviews/t", 1, {"traceparent": incoming})[0], get("http://reviews/t")[0]],
        sidecar.outbound_proxy, concurrency=1,
    )
    sent = kept.json()["headers"]["traceparent"].split("-")
    assert sent[1] == "0af7651916cd43dd8448eb211c80319c" and sent[2] != "b7ad6b7169203331"
    new = created.json()["headers"]["traceparent"].split("-")
    assert len(new) == 4 and len(new[1]) == 32 and new[1] != "0" * 32


def test_upstream_connections_are_pooled_across_client_connections(
    sidecar: Sidecar, apps: dict[str, App]
) -> None:
    install(sidecar, split("reviews", {"v1": 100}))
    apps["v1"].configure(reset=True)
    # Every request on its own client connection (Connection: close), as many apps do.
    results = fire(get("http://reviews/pooled", 60, {"connection": "close"}),
                   sidecar.outbound_proxy, concurrency=4)
    assert all(r.status == 200 for r in results)
    stats = apps["v1"].stats()
    assert stats["requests"] == 60
    # Reused (the pool may hold up to 16 connections from earlier tests), not one per request.
    assert stats["connections"] <= 20, stats


def test_allow_any_passes_unknown_hosts_through(sidecar: Sidecar, apps: dict[str, App]) -> None:
    install(sidecar, split("reviews", {"v1": 100}), outbound_policy="allow-any")
    outside = fire(get(f"http://{apps['v2'].address}/outside"), sidecar.outbound_proxy)[0]
    assert outside.status == 200 and outside.app == "v2"
    entry = [e for e in sidecar.access_log() if e["path"] == "/outside"][-1]
    assert entry["service"] == "PassthroughCluster"
