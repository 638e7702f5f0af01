"""explain over hand-made compiled configs: faults, sticky cookies, access verdicts, rewrites."""

from __future__ import annotations

from meshctl.contract import (
    AbortFault,
    Access,
    CompiledFault,
    CompiledRewrite,
    CompiledSticky,
    CompiledStickyCookie,
    CompiledStringMatch,
    DelayFault,
    RequestMatch,
    SidecarConfig,
)
from meshctl.explain import Question, backend_name, explain, text_report
from tests.support.configs import allow, dest, rule, sidecar


def mesh(*configs: SidecarConfig) -> dict[str, SidecarConfig]:
    return {c.name: c for c in configs}


def ask(configs: dict[str, SidecarConfig], url: str, source: str = "web", **headers: str):  # type: ignore[no-untyped-def]
    return explain(configs, Question(source, "GET", url, headers))


def test_faults() -> None:
    aborted = rule("default", ("v1", 100), fault=CompiledFault(abort=AbortFault(status=503, percent=100)))
    delayed = rule(
        "default",
        ("v1", 100),
        fault=CompiledFault(delay=DelayFault(fixed_ms=7000, percent=100), abort=AbortFault(status=500, percent=5)),
    )
    exp = ask(mesh(sidecar("web", dest("reviews", aborted)), sidecar("reviews")), "http://reviews/")
    assert (exp.status, exp.flags, exp.backends) == (503, ["FI"], [])
    exp = ask(mesh(sidecar("web", dest("reviews", delayed)), sidecar("reviews")), "http://reviews/")
    assert (exp.status, exp.flags) == (None, ["DI"])
    assert exp.notes == ["delay 7s injected for 100% of requests", "aborted with 500 for 5% of requests (fault)"]


def test_sticky_cookie() -> None:
    by_cookie = CompiledSticky(cookie=CompiledStickyCookie(name="ab", ttl_ms=60_000))
    sticky = rule("default", ("v1", 50), ("v3", 50), sticky=by_cookie)
    configs = mesh(sidecar("web", dest("reviews", sticky)), sidecar("reviews"))
    fresh = ask(configs, "http://reviews/")
    assert fresh.backend is None and len(fresh.backends) == 2
    assert "no ab cookie" in fresh.notes[0]
    pinned = [ask(configs, "http://reviews/", cookie=f"ab=user{i}") for i in range(20)]
    assert all(p.backend is not None for p in pinned)
    assert {backend_name(p.backend) for p in pinned if p.backend} == {"reviews/v1", "reviews/v3"}
    assert "this user (user0) gets" in text_report(pinned[0])


def test_access_verdict_of_the_destination() -> None:
    configs = mesh(
        sidecar("web", dest("reviews", rule("default", ("v1", 100)))),
        sidecar("reviews", access=Access(policies=(allow("reviews", "api", methods=("GET",)),))),
    )
    exp = ask(configs, "http://reviews/x")
    assert (exp.access, exp.status, exp.flags) == ("deny", 403, ["RBAC"])
    assert exp.access_reason == "no allow policy matches"
    configs["web"] = sidecar("web", dest("reviews", rule("default", ("v1", 100))), mtls="disabled")
    configs["api"] = sidecar("api", dest("reviews", rule("default", ("v1", 100))), mtls="disabled")
    assert ask(configs, "http://reviews/x", source="api").access == "deny"  # no identity without mTLS


def test_rewrite_and_no_rule() -> None:
    api = rule(
        "api",
        ("v3", 100),
        matches=(RequestMatch(path=CompiledStringMatch(prefix="/api")),),
        rewrite=CompiledRewrite(path_prefix="/v2", host="reviews.internal"),
    )
    configs = mesh(sidecar("web", dest("reviews", api)), sidecar("reviews"))
    exp = ask(configs, "http://reviews/api/items?page=2")
    assert (exp.upstream_target, exp.upstream_host) == ("/v2/items?page=2", "reviews.internal")
    none = ask(configs, "http://reviews/other")
    assert (none.rule, none.status, none.flags) == (None, 404, ["NR"])


def test_policy_test_expectation_on_the_upstream_path() -> None:
    from meshctl.policytest.cases import Expect
    from meshctl.policytest.runner import check

    api = rule(
        "api", ("v3", 100), matches=(RequestMatch(path=CompiledStringMatch(prefix="/api")),),
        rewrite=CompiledRewrite(path_prefix="/v2"),
    )
    configs = mesh(sidecar("web", dest("reviews", api)), sidecar("reviews"))
    got = ask(configs, "http://reviews/api/items")
    assert check(Expect(upstream="/v2/items"), got) == []
    assert check(Expect(upstream="/api/items"), got) == ["expected upstream path /api/items, got /v2/items"]
    missing = ask(configs, "http://reviews/nothing")
    assert check(Expect(upstream="/x"), missing) == [
        "expected upstream path /x, got nothing forwarded (status 404 [NR])"
    ]
