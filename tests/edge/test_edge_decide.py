"""The edge parts of `decide()` and the helpers around it, as pure functions."""

from __future__ import annotations

from meshctl.contract import (
    Access,
    CompiledAccessPolicy,
    CompiledAccessRule,
    CompiledClientRateLimit,
    CompiledCors,
    CompiledGateway,
    CompiledGatewayRule,
    CompiledStringMatch,
    GatewayListener,
    RequestMatch,
    SidecarConfig,
)
from meshctl.decision import Request, decide
from meshctl.decision.hosts import choose_listener, host_matches, host_of
from proxy_addon.client_limit import ClientLimiter, retry_after
from tests.support.configs import TD, dest, rule, sidecar

CORS = CompiledCors(allow_origins=(CompiledStringMatch(exact="https://app.example"),),
                    allow_methods=("GET",), max_age_s=60)


def gateway(*rules: CompiledGatewayRule) -> SidecarConfig:
    beta = RequestMatch(claims={"groups": CompiledStringMatch(exact="beta")})
    reviews = dest("reviews", rule("beta", ("v3", 100), matches=(beta,)), rule("default", ("v1", 100)))
    return SidecarConfig(
        revision="r1", kind="gateway", name="edge", mesh="shop", trust_domain=TD,
        identity=f"spiffe://{TD}/gateway/edge",
        gateway=CompiledGateway(name="edge", port=8443, rules=rules, cors=CORS),
        destinations={"reviews": reviews},
    )


def req(authority: str = "shop.example.com", method: str = "GET", listener: str | None = "secure",
        claims: dict[str, object] | None = None, **headers: str) -> Request:
    return Request(method, "/r", "", {k.replace("_", "-"): v for k, v in headers.items()},
                   authority=authority, listener=listener, claims=claims)


def test_hosts_and_wildcards() -> None:
    assert host_of("Shop.Example.com:8443") == "shop.example.com"
    assert host_of("[::1]:80") == "::1"
    assert host_matches("*.example.com", "a.b.example.com")
    assert not host_matches("*.example.com", "example.com")
    https = GatewayListener(name="s", port=1, protocol="https", hosts=("shop.example.com", "*.example.com"))
    http = GatewayListener(name="h", port=1, protocol="http")
    assert choose_listener((https, http), "a.example.com", "a.example.com", tls=True) is https
    assert choose_listener((https, http), "shop.example.com", "other.org", tls=True) is None
    assert choose_listener((https, http), "anything.org", None, tls=False) is http


def test_rules_are_kept_to_their_hosts_and_listeners() -> None:
    config = gateway(
        CompiledGatewayRule(name="api", hosts=("*.api.example.com",), service="reviews"),
        CompiledGatewayRule(name="plain", listeners=("web",), service="reviews"),
    )
    assert decide(config, req("v1.api.example.com")).gateway_rule.name == "api"  # type: ignore[union-attr]
    assert decide(config, req("shop.example.com")).answer.flags == ("NR",)  # type: ignore[union-attr]
    assert decide(config, req("shop.example.com", listener="web")).gateway_rule.name == "plain"  # type: ignore[union-attr]


def test_claims_route_and_a_missing_token_is_refused_where_required() -> None:
    config = gateway(CompiledGatewayRule(name="all", service="reviews", require_token=True))
    assert decide(config, req()).answer.status == 401  # type: ignore[union-attr]
    beta = decide(config, req(claims={"sub": "a", "groups": ["alpha", "beta"]}))
    assert beta.backend is not None and beta.backend.version == "v3"
    other = decide(config, req(claims={"sub": "b", "groups": "alpha"}))
    assert other.backend is not None and other.backend.version == "v1"


def test_cors_preflight_and_refused_origin() -> None:
    config = gateway(CompiledGatewayRule(name="all", service="reviews"))
    ok = decide(config, req(method="OPTIONS", origin="https://app.example", access_control_request_method="GET"))
    assert ok.answer is not None and ok.answer.status == 204
    assert dict(ok.answer.headers)["access-control-max-age"] == "60"
    bad = decide(config, req(method="OPTIONS", origin="https://evil.example", access_control_request_method="GET"))
    assert bad.answer is not None and bad.answer.status == 403 and bad.answer.headers == ()
    plain = decide(config, req(origin="https://app.example"))
    assert plain.answer is None and plain.cors == CORS


def test_access_policy_request_principals() -> None:
    policy = CompiledAccessPolicy(name="users", rules=(
        CompiledAccessRule(request_principals=("https://id.example/alice",)),))
    config = sidecar("orders", access=Access(policies=(policy,)), mtls="permissive")
    gw = f"spiffe://{TD}/gateway/edge"
    alice = Request("GET", "/o", inbound=True, identity=gw, principal="https://id.example/alice")
    bob = Request("GET", "/o", inbound=True, identity=gw, principal="https://id.example/bob")
    nobody = Request("GET", "/o", inbound=True, identity=gw)
    assert decide(config, alice).answer is None
    assert decide(config, bob).answer.flags == ("RBAC",)  # type: ignore[union-attr]
    assert decide(config, nobody).answer.flags == ("RBAC",)  # type: ignore[union-attr]


def test_client_limiter_buckets_are_per_client_and_bounded() -> None:
    limiter = ClientLimiter(CompiledClientRateLimit(requests_per_second=10, burst=2))
    assert limiter.take("a", now=0.0) is None and limiter.take("a", now=0.0) is None
    wait = limiter.take("a", now=0.0)
    assert wait is not None and abs(wait - 0.1) < 1e-9 and retry_after(wait) == "1"
    assert limiter.take("b", now=0.0) is None  # another client has its own bucket
    assert limiter.take("a", now=0.1) is None  # refilled at 10/s
    for i in range(10_050):
        limiter.take(f"c{i}", now=1.0)
    assert len(limiter) == 10_000
