"""`decide(config, request)`: the one routing decision the sidecar carries out and explain prints."""

from __future__ import annotations

from mitmproxy.http import Headers
from multidict import CIMultiDict

from meshctl.contract import (
    AbortFault,
    Access,
    CompiledDirectResponse,
    CompiledFault,
    CompiledGateway,
    CompiledGatewayRule,
    CompiledHeaderOps,
    CompiledRedirect,
    CompiledRewrite,
    CompiledSticky,
    CompiledStringMatch,
    RequestMatch,
    RetryPolicy,
    SidecarConfig,
)
from meshctl.decision import Request, decide, retry_eligibility
from meshctl.decision.headers import apply_header_ops, joined, with_ops
from tests.support.configs import TD, allow, dest, rule, sid, sidecar

RETRIES = RetryPolicy(attempts=2, on=("5xx",))


def prefix(p: str) -> tuple[RequestMatch, ...]:
    return (RequestMatch(path=CompiledStringMatch(prefix=p)),)


def web(*rules, **kw) -> SidecarConfig:  # type: ignore[no-untyped-def]
    return sidecar("web", dest("reviews", *rules), **kw)


def gateway(*rules: CompiledGatewayRule) -> SidecarConfig:
    return SidecarConfig(
        revision="r1", kind="gateway", name="edge", mesh="shop", trust_domain=TD,
        identity=f"spiffe://{TD}/gateway/edge", gateway=CompiledGateway(name="edge", port=8080, rules=rules),
        destinations={"reviews": dest("reviews", rule("default", ("v1", 100)))},
    )


def out(method: str, target: str, host: str = "reviews", **headers: str) -> Request:
    return Request(method, target, host, {k.replace("_", "-"): v for k, v in headers.items()}, authority=host)


def test_retries_depend_on_the_method_and_the_body() -> None:
    config = web(rule("default", ("v1", 100), retries=RETRIES))
    assert decide(config, out("GET", "/r")).retry_attempts == 2
    post = decide(config, out("POST", "/r"))
    assert (post.retry_attempts, post.retry_refusal) == (0, "POST is not idempotent: retried only with nonIdempotent")
    allowed = web(rule("default", ("v1", 100), retries=RETRIES.model_copy(update={"non_idempotent": True})))
    assert decide(allowed, out("POST", "/r")).retry_attempts == 2
    big = Request("PUT", "/r", "reviews", body_size=64 * 1024 + 1)
    assert decide(config, big).retry_attempts == 0
    assert retry_eligibility(RetryPolicy(attempts=2, on=()), "GET", 0) == (0, None)


def test_redirect_and_direct_response_answer_without_backends() -> None:
    config = web(
        rule("moved", matches=prefix("/old"), redirect=CompiledRedirect(path="/new", status=308)),
        rule("teapot", matches=prefix("/tea"), respond=CompiledDirectResponse(status=418, body="short")),
        rule("default", ("v1", 100)),
    )
    moved = decide(config, Request("GET", "/old/x", "reviews", authority="reviews:8080"))
    assert moved.answer is not None and moved.rule_name == "moved"
    assert (moved.answer.status, moved.answer.location, moved.backends) == (308, "http://reviews:8080/new", ())
    # the Host as received (port included) names the redirect's host; without one, the service
    moved = decide(config, Request("GET", "/old", "reviews"))
    assert moved.answer is not None and moved.answer.location == "http://reviews/new"
    teapot = decide(config, out("GET", "/tea"))
    assert teapot.answer is not None and (teapot.answer.status, teapot.answer.body, teapot.answer.flags) == (
        418, "short", ()
    )


def test_destination_lookup_refusals_and_passthrough() -> None:
    config = web(rule("default", ("v1", 100)), denied=("ratings",))
    denied = decide(config, out("GET", "/", host="ratings"))
    assert denied.answer is not None and (denied.answer.status, denied.answer.flags) == (403, ("RBAC",))
    assert denied.access is not None and not denied.access.allowed and denied.service == "ratings"
    unknown = decide(config, out("GET", "/", host="example.com"))
    assert unknown.answer is not None and (unknown.answer.status, unknown.answer.flags) == (502, ("NR",))
    open_config = web(rule("default", ("v1", 100)), outbound_policy="allow-any")
    assert decide(open_config, out("GET", "/", host="example.com")).passthrough


def test_no_rule_is_404_nr() -> None:
    config = web(rule("api", ("v1", 100), matches=prefix("/api")))
    nothing = decide(config, out("GET", "/other"))
    assert nothing.answer is not None and (nothing.answer.status, nothing.answer.flags) == (404, ("NR",))
    assert nothing.rule is None and nothing.service == "reviews"


def test_split_sticky_rewrite_timeout_fault() -> None:
    fault = CompiledFault(abort=AbortFault(status=503, percent=10))
    config = web(
        rule("api", ("v3", 100), matches=prefix("/api"), rewrite=CompiledRewrite(path_prefix="/v2", host="internal")),
        rule("default", ("v1", 90), ("v3", 10), sticky=CompiledSticky(header="end-user"), timeout_ms=3000, fault=fault),
    )
    api = decide(config, out("GET", "/api/items?x=1"))
    assert (api.upstream_target, api.upstream_host) == ("/v2/items?x=1", "internal")
    split = decide(config, out("GET", "/r"))
    assert [(b.version, p) for b, p in split.backends] == [("v1", 0.9), ("v3", 0.1)]
    assert split.backend is None and split.timeout_ms == 3000 and split.fault == fault
    pinned = decide(config, out("GET", "/r", end_user="jason"))
    assert pinned.sticky_key == "jason" and pinned.backend is not None
    assert all(decide(config, out("GET", "/x", end_user="jason")).backend == pinned.backend for _ in range(3))


def test_inbound_access_verdict() -> None:
    reviews = sidecar("reviews", access=Access(policies=(allow("reviews", "web", methods=("GET",)),)))
    ok = decide(reviews, Request("GET", "/r?x", inbound=True, identity=sid("web")))
    assert ok.answer is None and ok.access is not None and ok.access.policy == "reviews"
    refused = decide(reviews, Request("POST", "/r", inbound=True, identity=sid("web")))
    assert refused.answer is not None and refused.answer.flags == ("RBAC",) and refused.access is not None
    strict = decide(reviews, Request("GET", "/r", inbound=True, identity=None))
    assert strict.answer is not None and strict.access is None  # refused before any policy is read


def test_gateway_header_operations_decide_the_route_as_mitmproxy_reads_them() -> None:
    ops = CompiledHeaderOps(set={"x-door": "beta"}, add={"end-user": "gateway"}, remove=("x-drop",))
    beta = rule("beta", ("v3", 100), matches=(RequestMatch(headers={"end-user": CompiledStringMatch(
        exact="jason, gateway")}),))
    config = gateway(CompiledGatewayRule(name="door", service="reviews", request_headers=ops))
    routes = dest("reviews", beta, rule("default", ("v1", 100)))
    config = config.model_copy(update={"destinations": {"reviews": routes}})
    got = decide(config, Request("GET", "/p", headers={"end-user": "jason", "x-drop": "1"}))
    assert got.rule_name == "door/beta" and got.backend is not None and got.backend.version == "v3"
    assert got.request.headers == {"end-user": "jason, gateway", "x-door": "beta"}
    lost = decide(config, Request("GET", "/p"))
    assert lost.rule_name == "door/default"
    only_a = gateway(CompiledGatewayRule(name="only", service="reviews", matches=prefix("/a")))
    none = decide(only_a, Request("GET", "/b"))
    assert none.answer is not None and none.answer.status == 404 and none.rule_name is None


def test_header_operations_are_mitmproxys() -> None:
    """One function for mitmproxy's Headers and the forwarded CIMultiDict, with the same result."""
    ops = CompiledHeaderOps(set={"a": "1"}, add={"b": "2"}, remove=("c",))
    fields = [(b"A", b"0"), (b"a", b"00"), (b"B", b"x"), (b"C", b"y"), (b"c", b"z")]
    message = Headers(fields)
    apply_header_ops(message, ops)
    forwarded: CIMultiDict[str] = CIMultiDict((k.decode(), v.decode()) for k, v in fields)
    apply_header_ops(forwarded, ops)
    assert joined(message.fields) == {"a": "1", "b": "x, 2"}
    assert joined((k.encode(), v.encode()) for k, v in forwarded.items()) == joined(message.fields)
    assert with_ops({"a": "0", "b": "x", "c": "y"}, ops) == {"a": "1", "b": "x, 2"}
