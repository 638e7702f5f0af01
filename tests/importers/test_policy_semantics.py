"""Policy fields a migrating Istio / Gateway API user expects, checked at the compiled level."""

from __future__ import annotations

from meshctl import contract as c
from meshctl.contract import CompiledRedirect, CompiledRegexRewrite, CompiledRewrite, CompiledStringMatch
from meshctl.pipeline import build
from meshctl.sources import PolicyFile

SERVICES = """
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: reviews}
spec:
  versions:
    - {name: v1, run: [app]}
    - {name: v2, run: [app]}
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: ratings}
spec:
  versions:
    - {name: v1, run: [app]}
    - {name: v2, run: [app]}
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: productpage}
spec:
  versions: [{name: v1, run: [app]}]
"""


def compiled(route: str, extra: str = "") -> dict[str, c.SidecarConfig]:
    files = [PolicyFile("svc.yaml", SERVICES + extra), PolicyFile("route.yaml", route)]
    result = build(files)
    assert result.ok and result.compiled is not None, result.diagnostics
    assert not [d for d in result.diagnostics if d.severity == "error"], result.diagnostics
    return result.compiled.configs


RATINGS_FROM_V2 = """
apiVersion: meshctl/v1alpha1
kind: Route
metadata: {name: ratings}
spec:
  service: ratings
  rules:
    - name: reviews-v2
      match: [{from: [reviews/v2]}]
      backends: [{version: v2}]
    - name: productpage-or-reviews
      match: [{from: [productpage, reviews/v1], headers: {x: {exact: "1"}}}]
      backends: [{version: v2}]
    - name: rest
      backends: [{version: v1}]
"""


def test_from_a_version_is_kept_for_that_callers_sidecars_only() -> None:
    configs = compiled(RATINGS_FROM_V2)
    reviews = configs["reviews"].destinations["ratings"].rules
    assert [r.name for r in reviews] == ["reviews-v2", "productpage-or-reviews", "rest"]
    assert reviews[0].matches[0].source_versions == ("v2",)
    assert reviews[1].matches[0].source_versions == ("v1",)
    product = configs["productpage"].destinations["ratings"].rules
    # productpage is not named by the first rule; it is named whole by the second.
    assert [r.name for r in product] == ["productpage-or-reviews", "rest"]
    assert product[0].matches[0].source_versions == ()


def test_timeout_none_compiles_to_no_timeout_and_mesh_default_none_too() -> None:
    route = """
apiVersion: meshctl/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
    - {name: slow, match: [{path: {exact: /slow}}], timeout: none, backends: [{version: v1}]}
    - {name: rest, backends: [{version: v1}]}
"""
    rules = compiled(route)["productpage"].destinations["reviews"].rules
    assert rules[0].timeout_ms is None
    assert rules[1].timeout_ms == 15_000
    mesh = """
---
apiVersion: meshctl/v1alpha1
kind: Mesh
metadata: {name: m}
spec: {defaults: {timeout: none, retries: {attempts: 1, perTryTimeout: 1s}}}
"""
    rules = compiled(route, mesh)["productpage"].destinations["reviews"].rules
    assert rules[1].timeout_ms is None


def test_backend_headers_redirect_scheme_port_and_rewrites_reach_the_config() -> None:
    route = """
apiVersion: meshctl/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
    - name: https
      match: [{path: {exact: /login}}]
      redirect: {scheme: https, port: 8443, status: 302}
    - name: full
      match: [{path: {segmentPrefix: /v2}}]
      rewrite: {fullPath: /all}
      backends: [{version: v2}]
    - name: regex
      match: [{path: {prefix: /r/}}]
      rewrite: {regex: {pattern: "^/r/(.*)$", substitution: "/reviews/\\\\1"}}
      backends: [{version: v1}]
    - name: split
      backends:
        - {version: v1, weight: 50, headers: {request: {set: {x-backend: one}}}}
        - {version: v2, weight: 50, headers: {response: {add: {x-from: two}}}}
"""
    rules = compiled(route)["productpage"].destinations["reviews"].rules
    assert rules[0].redirect == CompiledRedirect(scheme="https", port=8443, status=302)
    assert rules[1].matches[0].path == CompiledStringMatch(segment_prefix="/v2")
    assert rules[1].rewrite == CompiledRewrite(full_path="/all")
    regex = CompiledRegexRewrite(pattern="^/r/(.*)$", substitution="/reviews/\\1")
    assert rules[2].rewrite == CompiledRewrite(regex=regex)
    v1, v2 = rules[3].backends
    assert v1.request_headers.set == {"x-backend": "one"}
    assert v2.response_headers.add == {"x-from": "two"}
