"""The pure decision functions: routing, access, retries, limits, endpoints (no processes)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter

import pytest

from meshctl.contract import (
    Access,
    CompiledAccessPolicy,
    CompiledAccessRule,
    CompiledBackend,
    CompiledBackoff,
    CompiledConnectionPool,
    CompiledOutlierDetection,
    CompiledRateLimit,
    CompiledRedirect,
    CompiledRetryBudget,
    CompiledRewrite,
    CompiledRouteRule,
    CompiledStringMatch,
    LoadBalancer,
    RequestMatch,
    RetryPolicy,
)
from meshctl.decision import retry_eligibility, routing
from meshctl.decision.access import decide
from proxy_addon.endpoints import EndpointSet
from proxy_addon.limits import Overflow, PoolGate, TokenBucket
from proxy_addon.retry import (
    RetryBudget,
    backoff_ms,
    retriable_error,
    retriable_status,
)
from proxy_addon.tracing import next_traceparent
from tests.support.procs import REPO

V = routing.view_from_target


def b(version: str, weight: int) -> CompiledBackend:
    return CompiledBackend(service="reviews", version=version, weight=weight)


def test_match_rule_first_match_wins_and_entries_are_alternatives() -> None:
    rules = (
        CompiledRouteRule(name="a", backends=(b("v2", 100),), matches=(
            RequestMatch(headers={"end-user": CompiledStringMatch(exact="jason")}, methods=("GET",)),
            RequestMatch(query={"beta": CompiledStringMatch(present=True)}),
        )),
        CompiledRouteRule(name="b", backends=(b("v1", 100),),
                  matches=(RequestMatch(path=CompiledStringMatch(regex="/r/[0-9]+")),)),
    )
    name = lambda v: (m[0].name if (m := routing.match_rule(rules, v)) else None)  # noqa: E731
    assert name(V("GET", "/x", {"end-user": "jason"})) == "a"
    assert name(V("POST", "/x", {"end-user": "jason"})) is None
    assert name(V("POST", "/x?beta", {})) == "a"
    assert name(V("GET", "/r/12", {})) == "b"
    assert name(V("GET", "/r/12x", {})) is None  # regex is a full match


def test_probabilities_and_weighted_pick() -> None:
    backends = (b("v1", 90), b("v3", 10))
    assert [p for _, p in routing.backend_probabilities(backends)] == [0.9, 0.1]
    picks = Counter(routing.pick_weighted(backends, i / 1000).version for i in range(1000))
    assert picks == {"v1": 900, "v3": 100}


def test_sticky_pick_is_stable_weighted_and_moves_few_users() -> None:
    users = [f"user-{i}" for i in range(5000)]
    before = {u: routing.pick_sticky((b("v1", 80), b("v2", 20)), u).version for u in users}
    share = sum(v == "v2" for v in before.values()) / len(users)
    assert 0.18 <= share <= 0.22
    after = {u: routing.pick_sticky((b("v1", 70), b("v2", 30)), u).version for u in users}
    moved = [u for u in users if before[u] != after[u]]
    assert all(before[u] == "v1" for u in moved)
    assert 0.07 <= len(moved) / len(users) <= 0.14  # about the 10 points that had to move


def test_rewrite_and_redirect() -> None:
    m = RequestMatch(path=CompiledStringMatch(prefix="/v1api"))
    assert routing.rewritten_path("/v1api/items?q=1", CompiledRewrite(path_prefix="/api"), m) == \
        "/api/items?q=1"
    assert routing.rewritten_path("/v1api", CompiledRewrite(path_prefix="/"), m) == "/"
    assert routing.rewritten_path("/x", None, None) == "/x"
    assert routing.redirect_location(CompiledRedirect(path="/new"), "/old", "shop") == "http://shop/new"


def test_cookies_parse() -> None:
    assert routing.parse_cookies('a=1; ab="x y"; bad; =z') == {"a": "1", "ab": "x y"}


ID = "spiffe://shop.local/service/reviews"


@pytest.mark.parametrize(
    ("identity", "method", "path", "allowed"),
    [
        (ID, "GET", "/ratings/1", True),
        (ID, "POST", "/ratings/1", False),  # method not allowed
        (None, "GET", "/ratings/1", False),  # no identity: rules with sources never match
        (None, "GET", "/health", True),  # rule without sources
        (ID, "GET", "/ratings/secret", False),  # deny wins
        ("spiffe://shop.local/service/other", "GET", "/ratings/1", True),  # "*" any identity
    ],
)
def test_access_decide(identity: str | None, method: str, path: str, allowed: bool) -> None:
    access = Access(default="deny", policies=(
        CompiledAccessPolicy(name="deny-secret", action="deny",
                     rules=(CompiledAccessRule(paths=("*/secret",)),)),
        CompiledAccessPolicy(name="readers", rules=(
            CompiledAccessRule(sources=("*",), methods=("GET",), paths=("/ratings/*",)),
            CompiledAccessRule(paths=("/health",)),
        )),
    ))
    assert decide(access, identity, method, path).allowed is allowed


def test_access_default_applies_without_policies() -> None:
    assert decide(Access(default="deny"), ID, "GET", "/").allowed is False
    verdict = decide(Access(), None, "GET", "/")
    assert verdict.allowed and verdict.policy is None


def test_retry_conditions() -> None:
    policy = RetryPolicy(attempts=2, on=("5xx",))
    assert retry_eligibility(policy, "GET", 10) == (2, None)
    assert retry_eligibility(policy, "POST", 10)[0] == 0
    assert retry_eligibility(policy.model_copy(update={"non_idempotent": True}), "POST", 10) == (2, None)
    assert retry_eligibility(policy, "GET", 64 * 1024 + 1)[0] == 0
    assert retriable_status(("gateway-error",), 503) and not retriable_status(("gateway-error",), 500)
    assert retriable_status(("503",), 503) and not retriable_status(("503",), 502)
    assert retriable_status(("retriable-4xx",), 409)
    assert retriable_error(("connect-failure",), "connect-failure")
    assert not retriable_error(("connect-failure",), "reset")
    assert retriable_error(("5xx",), "timeout")


def test_backoff_is_exponential_with_full_jitter() -> None:
    backoff = CompiledBackoff(base_ms=25, max_ms=250)
    assert [backoff_ms(n, backoff, 0.999999) // 1 for n in (1, 2, 3, 4, 5, 6)] == [
        24, 49, 99, 199, 249, 249]
    assert backoff_ms(3, backoff, 0.0) == 0.0


def test_retry_budget_floor_and_percent() -> None:
    budget = RetryBudget(CompiledRetryBudget(percent=50, min_per_second=2))
    budget.requests_in_flight = 2
    assert budget.try_acquire(100.0) and budget.try_acquire(100.0)  # floor: 2 per second
    assert budget.try_acquire(100.0)  # 3 in flight are always allowed (Envoy's min concurrency)
    assert not budget.try_acquire(100.0)  # 4 retries > 50% of 2 requests
    budget.requests_in_flight = 10
    assert budget.try_acquire(100.5)  # 4 <= 5
    budget.release()
    assert budget.retries_in_flight == 3


def test_pool_gate_overflows_beyond_capacity_and_pending() -> None:
    async def scenario() -> list[str]:
        gate = PoolGate(CompiledConnectionPool(max_connections=1, max_pending_requests=1))
        await gate.acquire()
        waiter = asyncio.ensure_future(gate.acquire())
        await asyncio.sleep(0)
        outcome = []
        try:
            await gate.acquire()
        except Overflow:
            outcome.append("overflow")
        gate.release()  # hands the slot to the waiter
        await waiter
        outcome.append(f"active={gate.active}")
        gate.release()
        outcome.append(f"active={gate.active}")
        return outcome

    assert asyncio.run(scenario()) == ["overflow", "active=1", "active=0"]


def test_token_bucket() -> None:
    bucket = TokenBucket(CompiledRateLimit(requests_per_second=10, burst=2))
    now = bucket.stamp
    assert bucket.take(now) and bucket.take(now) and not bucket.take(now)
    assert bucket.take(now + 0.15) and not bucket.take(now + 0.15)


def test_outlier_ejection_bounded_by_max_percent() -> None:
    eps = EndpointSet("reviews")
    a, c = eps.get("a:1", "v1"), eps.get("c:1", "v1")
    od = CompiledOutlierDetection(consecutive_5xx=2, base_ejection_time_ms=1000, max_ejection_percent=50)
    assert not eps.record(a, True, 0.0, od)
    assert eps.record(a, True, 0.0, od)  # second 5xx in a row: ejected
    assert not eps.record(c, True, 0.0, od) and not eps.record(c, True, 0.0, od)  # 50% cap
    lb = LoadBalancer()
    assert eps.pick([a, c], lb, 0.5, set()) is c
    assert eps.pick([a, c], lb, 1.5, {"c:1"}) is a  # ejection over; a retry avoids c


def test_traceparent() -> None:
    kept = next_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", 1.0)
    assert kept.startswith("00-0af7651916cd43dd8448eb211c80319c-") and kept.endswith("-01")
    fresh = next_traceparent("garbage", 0.0)
    assert fresh.endswith("-00") and len(fresh) == 55


def test_addon_imports_nothing_from_the_cli_side() -> None:
    # ruamel is mitmproxy's own dependency (its option files), so the check runs with the
    # sidecar's import path; the import-linter contract covers proxy_addon's own imports.
    code = (
        "from proxy_addon.patches import skip_default_addons; skip_default_addons()\n"
        "import sys, proxy_addon.server, meshctl.decision.routing, meshctl.decision.access\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('typer', 'jinja2', 'jsonschema', 'flask') or m.startswith(('meshctl.cli', "
        "'meshctl.model', 'meshctl.validate', 'meshctl.compile'))]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_addon_sources_import_no_forbidden_module() -> None:
    import ast

    forbidden = ("typer", "jinja2", "ruamel", "jsonschema", "meshctl.cli", "meshctl.model",
                 "meshctl.validate", "meshctl.compile")
    offenders = []
    for path in (REPO / "proxy_addon").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names
                          if any(n == f or n.startswith(f + ".") for f in forbidden)]
    assert offenders == []


def test_load_balancers() -> None:
    eps = EndpointSet("reviews")
    pool = [eps.get(f"h:{i}", "v1") for i in range(4)]
    rr = [eps.pick(pool, LoadBalancer(), 0.0, set()).address for _ in range(8)]
    assert Counter(rr) == {e.address: 2 for e in pool}  # round-robin: even
    hashed = LoadBalancer(policy="hash", hash_header="x-user")
    picks = {eps.pick(pool, hashed, 0.0, set(), "alice").address for _ in range(20)}
    assert len(picks) == 1  # one key, one endpoint
    spread = {eps.pick(pool, hashed, 0.0, set(), f"user-{i}").address for i in range(200)}
    assert spread == {e.address for e in pool}
    pool[0].active, pool[1].active, pool[2].active, pool[3].active = 9, 9, 9, 0
    least = Counter(eps.pick(pool, LoadBalancer(policy="least-request"), 0.0, set()).address
                    for _ in range(400))
    assert least.most_common(1)[0][0] == "h:3"  # the idle endpoint wins every pairing it is in
    random_picks = {eps.pick(pool, LoadBalancer(policy="random"), 0.0, set()).address
                    for _ in range(200)}
    assert random_picks == {e.address for e in pool}
