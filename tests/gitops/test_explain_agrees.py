"""`meshctl explain` and a running sidecar agree: same rule, same backend, same answers.

Real sidecars run the compiled configs (as `meshctl compile` makes them): `productpage`'s
outbound side, the `edge` gateway, and `ratings`' inbound side (its access policy). Every request
goes through a sidecar and through `explain`; the two are compared. The backend a sidecar chose
is the `service`/`version` of its access-log entry (the addon tells versions apart by endpoint
address, so each version has its own app).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest

from meshctl.contract import SidecarConfig
from meshctl.explain import Explanation, Question, backend_name, explain, text_report
from meshctl.pipeline import build
from meshctl.sources.worktree import read_worktree
from tests.dataplane.conftest import Result, fire
from tests.support.procs import App, Sidecar, bindings_for, start_app, start_sidecar

from .shop import service

POLICY = {
    "mesh.yaml": "apiVersion: meshctl/v1alpha1\nkind: Mesh\nmetadata: {name: agree}\n"
    "spec: {mtls: disabled, accessDefault: allow}\n",
    "productpage.yaml": service("productpage", port=9000),
    "reviews.yaml": service("reviews", ("v1", "v2", "v3"), port=9100),
    "ratings.yaml": service("ratings", port=9200),
    "routes.yaml": """\
apiVersion: meshctl/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
    - name: beta
      match: [{headers: {end-user: {exact: jason}}}]
      backends: [{version: v2, weight: 100}]
    - name: api
      match: [{path: {prefix: /api}, method: [GET]}]
      backends: [{version: v3, weight: 100}]
      rewrite: {pathPrefix: /v3api}
    - name: teapot
      match: [{path: {exact: /teapot}}]
      respond: {status: 418, body: "short and stout"}
    - name: moved
      match: [{path: {prefix: /old}}]
      redirect: {path: /new, status: 301}
    - name: flaky
      match: [{path: {prefix: /flaky}}]
      backends: [{version: v1, weight: 100}]
      retries: {attempts: 2, on: [5xx], backoff: {base: 1ms, max: 2ms}}
    - name: broken
      match: [{path: {prefix: /broken}}]
      backends: [{version: v1, weight: 100}]
      fault: {abort: {status: 503, percent: 100}}
    - name: default
      backends: [{version: v1, weight: 50}, {version: v2, weight: 30}, {version: v3, weight: 20}]
      sticky: {header: end-user}
---
apiVersion: meshctl/v1alpha1
kind: Route
metadata: {name: ratings}
spec:
  service: ratings
  rules:
    - name: ratings
      match: [{path: {prefix: /ratings}}]
      backends: [{version: v1, weight: 100}]
""",
    "access.yaml": """\
apiVersion: meshctl/v1alpha1
kind: AccessPolicy
metadata: {name: ratings}
spec:
  service: ratings
  rules:
    - methods: [GET]
""",
    "gateway.yaml": """\
apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {name: edge}
spec:
  port: 18080
  rules:
    - name: health
      match: [{path: {exact: /healthz}}]
      respond: {status: 200, body: ok}
    - name: beta-door
      match: [{path: {prefix: /beta}}]
      service: reviews
      headers: {request: {set: {end-user: jason}}}
    - name: rest
      service: ratings
""",
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SidecarConfig]:
    policy_dir = tmp_path_factory.mktemp("agree") / "mesh.d"
    policy_dir.mkdir()
    for name, text in POLICY.items():
        (policy_dir / name).write_text(text)
    result = build(read_worktree(policy_dir), "agree-1")
    assert result.compiled is not None, result.diagnostics
    return result.compiled.configs


READY_TIMEOUT = 120.0  # generous: the machine may be busy


@pytest.fixture(scope="module")
def mesh(
    tmp_path_factory: pytest.TempPathFactory, compiled: dict[str, SidecarConfig]
) -> Iterator[tuple[Sidecar, Sidecar, list[App]]]:
    apps = {v: start_app(f"reviews-{v}") for v in ("v1", "v2", "v3")}
    started: list[Sidecar] = []
    try:
        # ratings is reached through its own sidecar, which enforces its access policy.
        ratings = start_sidecar(
            tmp_path_factory.mktemp("ratings"),
            compiled["ratings"],
            bindings_for(outbound=False, app=apps["v1"].address, instance="ratings-0"),
            wait=False,
        )
        started.append(ratings)
        endpoints: dict[str, dict[str, tuple[str, ...]]] = {
            "productpage": {"v1": ("127.0.0.1:9",)},  # never called here
            "reviews": {v: (app.address,) for v, app in apps.items()},
            "ratings": {"v1": (ratings.inbound_address,)},
        }
        sidecar = start_sidecar(
            tmp_path_factory.mktemp("sidecar"),
            compiled["productpage"],
            bindings_for(inbound=False, endpoints=endpoints),
            wait=False,
        )
        started.append(sidecar)
        gateway = start_sidecar(
            tmp_path_factory.mktemp("gateway"),
            compiled["gateway/edge"],
            bindings_for(inbound=False, endpoints=endpoints, version=None, instance="edge-0"),
            wait=False,
        )
        started.append(gateway)
        for sc in started:
            sc.wait_ready(timeout=READY_TIMEOUT)
        yield sidecar, gateway, list(apps.values())
    finally:
        for sc in reversed(started):
            sc.stop()
        for app in apps.values():
            app.stop()


def chosen(entry: dict[str, object]) -> str | None:
    """The backend a sidecar sent a request to, from its access-log entry."""
    return f"{entry['service']}/{entry['version']}" if entry.get("version") else None


def both(
    compiled: dict[str, SidecarConfig], sidecar: Sidecar, requests: list[tuple[str, str, dict[str, str]]]
) -> list[tuple[Explanation, Result, dict[str, object]]]:
    """(explain's answer, the sidecar's answer, its access-log entry) for each request."""
    tagged = [(m, f"{u}{'&' if '?' in u else '?'}n={i}", h) for i, (m, u, h) in enumerate(requests)]
    results = fire([(m, u, h, None) for m, u, h in tagged], sidecar.outbound_proxy, concurrency=4)
    log: dict[str, dict[str, object]] = {}
    for entry in sidecar.access_log():
        log[str(entry["path"])] = entry
    out = []
    for (method, url, headers), result in zip(tagged, results, strict=True):
        exp = explain(compiled, Question("productpage", method, url, headers))
        target = "/" + url.split("://", 1)[1].split("/", 1)[1]
        out.append((exp, result, log.get(target, {})))
    return out


def test_rule_backend_and_answers_agree(
    compiled: dict[str, SidecarConfig], mesh: tuple[Sidecar, Sidecar, list[App]]
) -> None:
    sidecar, _, _ = mesh
    users = [{"end-user": f"shopper-{i}"} for i in range(40)]
    requests = [
        ("GET", "http://reviews/reviews/1", {"end-user": "jason"}),
        ("GET", "http://reviews/api/items?x=1", {}),
        ("POST", "http://reviews/api/items", {"end-user": "shopper-3"}),
        ("GET", "http://reviews/teapot", {}),
        ("GET", "http://reviews/old/page", {}),
        ("GET", "http://ratings/ratings/7", {}),
        ("GET", "http://ratings/elsewhere", {}),
        ("POST", "http://ratings/ratings/8", {}),  # refused by ratings' access policy
        ("GET", "http://nowhere/", {}),
        *[("GET", "http://reviews/reviews/2", u) for u in users],
    ]
    checked = Counter[str]()
    for exp, got, entry in both(compiled, sidecar, requests):
        where = f"{exp.method} {exp.url}"
        if exp.status is None:
            assert got.status == 200, (where, got.status, got.body[:200])
            assert exp.backend is not None, where  # every request here has one certain backend
            assert chosen(entry) == backend_name(exp.backend), (where, entry)
            if exp.backend.service == "reviews":  # and the app of that version answered
                assert got.app == f"reviews-{exp.backend.version}", where
            assert entry.get("route_name") == exp.rule, (where, entry)
            if exp.upstream_target is not None:
                assert json.loads(got.body)["path"] == exp.upstream_target, where
            checked["forwarded"] += 1
        else:
            assert got.status == exp.status, (where, got.status, exp.notes)
            if exp.flags:
                assert got.flags == ",".join(exp.flags), where
            if exp.location:
                assert got.headers.get("Location") == exp.location, where
            if exp.rule:
                assert entry.get("route_name") == exp.rule, (where, entry)
            checked["answered by the sidecar"] += 1
            if exp.access == "deny":
                assert (got.status, got.flags) == (403, "RBAC"), where
                checked["refused by the access policy"] += 1
    assert checked == {"forwarded": 44, "answered by the sidecar": 5, "refused by the access policy": 1}
    sticky_versions = Counter(
        backend_name(e.backend)
        for u in users
        if (e := explain(compiled, Question("productpage", "GET", "http://reviews/r", u))).backend
    )
    assert len(sticky_versions) == 3, sticky_versions  # the 40 shoppers reach every version


def test_retries_fault_redirect_response_and_refusal_agree(
    compiled: dict[str, SidecarConfig], mesh: tuple[Sidecar, Sidecar, list[App]]
) -> None:
    """The cases where a hand-kept copy of the decision drifted: a POST is not retried (explain once
    said `retries: 2` for it), a fault answers, a redirect, a direct response, a refused caller."""
    sidecar, _, _ = mesh
    requests = [
        ("GET", "http://reviews/flaky/get?status=503", {}),
        ("POST", "http://reviews/flaky/post?status=503", {}),
        ("GET", "http://reviews/broken", {}),
        ("GET", "http://reviews/old/page", {}),
        ("GET", "http://reviews/teapot", {}),
        ("POST", "http://ratings/ratings/9", {}),
    ]
    seen = []
    for exp, got, entry in both(compiled, sidecar, requests):
        where = f"{exp.method} {exp.url}"
        assert entry.get("route_name") == exp.rule, (where, entry)
        if exp.status is None:  # forwarded: the upstream's 503, after the retries explain predicts
            assert got.status == 503, (where, got.status)
            assert entry["attempts"] == 1 + exp.retry_attempts, (where, entry, exp.notes)
        else:
            assert (got.status, got.flags or "") == (exp.status, ",".join(exp.flags)), (where, exp.notes)
            assert got.headers.get("Location") == exp.location, where
        seen.append((exp.rule, exp.status, exp.retry_attempts, exp.access))
    assert seen == [
        ("flaky", None, 2, "allow"),
        ("flaky", None, 0, "allow"),
        ("broken", 503, 2, "allow"),  # the mesh default (connect-failure); the fault answers first
        ("moved", 301, 0, "allow"),
        ("teapot", 418, 0, "allow"),
        ("ratings", 403, 0, "deny"),
    ]
    rows = dict(line.split(":", 1) for line in text_report(explain(
        compiled, Question("productpage", "POST", "http://reviews/flaky/x"))).splitlines() if ":" in line)
    assert rows["retries"].strip() == "none for this request (the rule's 2 do not apply)"


def test_split_probabilities_agree(
    compiled: dict[str, SidecarConfig], mesh: tuple[Sidecar, Sidecar, list[App]]
) -> None:
    sidecar, _, _ = mesh
    n = 600
    exp = explain(compiled, Question("productpage", "GET", "http://reviews/split-check"))
    assert exp.rule == "default" and exp.backend is None
    predicted = {backend_name(b): p for b, p in exp.backends}
    assert predicted == {"reviews/v1": 0.5, "reviews/v2": 0.3, "reviews/v3": 0.2}
    results = fire([("GET", "http://reviews/split-check", {}, None)] * n, sidecar.outbound_proxy)
    assert all(r.status == 200 for r in results), Counter(r.status for r in results)
    seen = Counter(chosen(e) for e in sidecar.access_log() if e["path"] == "/split-check")
    assert sum(seen.values()) == n and set(seen) == set(predicted), seen
    for name, p in predicted.items():
        # Binomial standard deviation at n=600 is at most 2 points; allow 4.5 sigma.
        assert abs(seen[name] / n - p) < 0.09, (name, seen)


def test_gateway_decisions_agree(compiled: dict[str, SidecarConfig], mesh: tuple[Sidecar, Sidecar, list[App]]) -> None:
    _, gateway, _ = mesh
    paths = ["/healthz", "/beta/page", "/ratings/3", "/other"]
    results = fire([("GET", f"{gateway.gateway_url}{p}", {}, None) for p in paths], concurrency=1)
    log = {str(e["path"]): e for e in gateway.access_log()}
    outcomes = []
    for path, got in zip(paths, results, strict=True):
        exp = explain(compiled, Question("gateway/edge", "GET", path))
        if exp.status is None:
            assert exp.backend is not None
            assert (got.status, chosen(log[path])) == (200, backend_name(exp.backend)), path
        else:
            assert got.status == exp.status, (path, got.status, exp.notes)
        assert log[path].get("route_name") == exp.rule, (path, log[path])
        outcomes.append((exp.rule, exp.status, backend_name(exp.backend) if exp.backend else None))
    assert outcomes == [
        ("health", 200, None),
        ("beta-door/beta", None, "reviews/v2"),  # the gateway's header puts the caller in beta
        ("rest/ratings", None, "ratings/v1"),
        ("rest", 404, None),  # the ratings route has no rule for /other
    ]
