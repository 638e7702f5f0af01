"""Request-path semantics as Envoy (behind Istio) and the Gateway API define them: rewrites,
segment-prefix paths, redirect scheme and port, caller versions, which failures retry."""

from __future__ import annotations

import pytest

from meshctl.contract import (
    CompiledRedirect,
    CompiledRegexRewrite,
    CompiledRewrite,
    CompiledStringMatch,
    RequestMatch,
    RetryPolicy,
)
from meshctl.decision import NEVER_REACHED, retry_eligibility, retry_unreached_only, routing, unreached_retries


def path_match(**kw: str) -> RequestMatch:
    return RequestMatch(path=CompiledStringMatch(**kw))


@pytest.mark.parametrize(("match", "target", "rewrite", "expected"), [
    # Envoy prefix_rewrite after an exact match: the matched path is the whole path.
    (path_match(exact="/old"), "/old?x=1", CompiledRewrite(path_prefix="/new"), "/new?x=1"),
    (path_match(prefix="/old"), "/old/a", CompiledRewrite(path_prefix="/new"), "/new/a"),
    # Gateway API ReplacePrefixMatch on a PathPrefix match: element-wise.
    (path_match(segment_prefix="/v2"), "/v2/a/b", CompiledRewrite(path_prefix="/api"), "/api/a/b"),
    (path_match(segment_prefix="/v2/"), "/v2", CompiledRewrite(path_prefix="/api"), "/api"),
    (path_match(segment_prefix="/v2"), "/v2/a", CompiledRewrite(path_prefix="/"), "/a"),
    # ReplaceFullPath: the whole path, whatever matched; the query stays.
    (path_match(prefix="/a"), "/a/b/c?q=2", CompiledRewrite(full_path="/all"), "/all?q=2"),
    # Istio uriRegexRewrite (Envoy regex_rewrite): every match substituted, \1 groups.
    (None, "/service/foo/v1/api", CompiledRewrite(regex=CompiledRegexRewrite(
        pattern="^/service/([^/]+)(/.*)$", substitution="\\2/instance/\\1")), "/v1/api/instance/foo"),
    (None, "/aaa/b", CompiledRewrite(regex=CompiledRegexRewrite(pattern="a", substitution="x")), "/xxx/b"),
])
def test_rewritten_path(match: RequestMatch | None, target: str, rewrite: CompiledRewrite, expected: str) -> None:
    assert routing.rewritten_path(target, rewrite, match) == expected


@pytest.mark.parametrize(("prefix", "path", "holds"), [
    ("/v2", "/v2", True), ("/v2", "/v2/", True), ("/v2", "/v2/x", True), ("/v2", "/v2x", False),
    ("/v2/", "/v2", True), ("/v2/", "/v2x", False), ("/", "/anything", True), ("/v2", "/v", False),
])
def test_segment_prefix_is_element_wise(prefix: str, path: str, holds: bool) -> None:
    # Gateway API: "PathPrefix /abc matches /abc, /abc/ and /abc/def, not /abcd".
    assert routing.string_matches(CompiledStringMatch(segment_prefix=prefix), path) is holds


@pytest.mark.parametrize(("redirect", "host", "expected"), [
    (CompiledRedirect(scheme="https"), "shop.example:8080", "https://shop.example/login"),
    (CompiledRedirect(scheme="https", port=8443), "shop.example:8080", "https://shop.example:8443/login"),
    (CompiledRedirect(scheme="https", port=443), "shop.example", "https://shop.example/login"),
    (CompiledRedirect(port=9090), "shop.example:8080", "http://shop.example:9090/login"),
    (CompiledRedirect(host="other", path="/x"), "shop.example:8080", "http://other/x"),
    (CompiledRedirect(), "shop.example:8080", "http://shop.example:8080/login"),
])
def test_redirect_location(redirect: CompiledRedirect, host: str, expected: str) -> None:
    assert routing.redirect_location(redirect, "/login", host) == expected


def test_match_on_caller_version_holds_only_in_that_versions_sidecars() -> None:
    match = RequestMatch(source_versions=("v2",))
    view = routing.view_from_target("GET", "/r", {})
    assert not routing.request_matches(match, view)
    assert routing.request_matches(match, routing.RequestView("GET", "/r", source_version="v2"))
    assert not routing.request_matches(match, routing.RequestView("GET", "/r", source_version="v1"))


def test_failures_that_never_reached_the_app_retry_for_every_method() -> None:
    policy = RetryPolicy(attempts=2, on=("connect-failure", "5xx"))
    assert retry_eligibility(policy, "POST", 10)[0] == 0  # a 5xx or a reset: the app may have acted
    assert unreached_retries(policy, "POST", 10) == 2  # a connect failure: it never saw the request
    assert retry_unreached_only(policy, "POST") and not retry_unreached_only(policy, "GET")
    assert not retry_unreached_only(policy.model_copy(update={"non_idempotent": True}), "POST")
    assert NEVER_REACHED == {"connect-failure", "refused-stream"}
    assert unreached_retries(policy.model_copy(update={"on": ("reset", "503")}), "POST", 10) == 0
    assert unreached_retries(policy, "POST", 10 * 1024 * 1024) == 0
