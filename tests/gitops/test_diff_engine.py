"""The diff engine over hand-made compiled configs: each change named as a reviewer would."""

from __future__ import annotations

import json

from meshctl.contract import (
    CompiledFault,
    CompiledGateway,
    CompiledGatewayRule,
    CompiledStringMatch,
    DelayFault,
    RequestMatch,
    SidecarConfig,
)
from meshctl.diff import REPORTERS, diff_meshes
from tests.support.configs import Access, RetryPolicy, allow, dest, rule, sidecar

DEFAULT = rule("default", ("v1", 90), ("v3", 10))


def mesh(*configs: SidecarConfig) -> dict[str, SidecarConfig]:
    return {c.name: c for c in configs}


def base() -> dict[str, SidecarConfig]:
    return mesh(
        sidecar("productpage", dest("reviews", DEFAULT)),
        sidecar("reviews", access=Access(policies=(allow("reviews", "productpage"),))),
    )


def triples(changes: list) -> list[tuple[str, str, str, str]]:
    return [(c.sidecar, c.path, c.change, c.summary) for c in changes]


def test_identical_meshes_differ_only_in_revision_have_no_changes() -> None:
    new = {k: v.model_copy(update={"revision": "r2"}) for k, v in base().items()}
    assert diff_meshes(base(), new) == []


def test_weight_change_is_reported_once_under_the_service() -> None:
    new = base()
    new["productpage"] = sidecar("productpage", dest("reviews", rule("default", ("v1", 80), ("v3", 20))))
    assert triples(diff_meshes(base(), new)) == [
        ("reviews", "route.rules[default].backends", "modified", 'rule "default" weights v1 90 -> 80, v3 10 -> 20'),
    ]
    [change] = diff_meshes(base(), new)
    assert change.affects == ("productpage",)
    assert {k: change.old[0][k] for k in ("service", "version", "weight")} == {
        "service": "reviews", "version": "v1", "weight": 90}


def test_route_change_seen_by_two_callers_is_one_change() -> None:
    old = mesh(sidecar("a", dest("reviews", DEFAULT)), sidecar("b", dest("reviews", DEFAULT)))
    moved = rule("default", ("v1", 50), ("v3", 50))
    new = mesh(sidecar("a", dest("reviews", moved)), sidecar("b", dest("reviews", moved)))
    [change] = diff_meshes(old, new)
    assert change.affects == ("a", "b")
    assert "for calls from" not in change.summary
    new = mesh(sidecar("a", dest("reviews", moved)), sidecar("b", dest("reviews", DEFAULT)))
    [change] = diff_meshes(old, new)
    assert change.summary.endswith("(for calls from a)")


def test_added_rule_and_changed_retries_and_timeout() -> None:
    beta = rule("beta", ("v2", 100), matches=(RequestMatch(headers={"end-user": CompiledStringMatch(exact="jason")}),))
    retried = rule(
        "default",
        ("v1", 90),
        ("v3", 10),
        timeout_ms=2000,
        retries=RetryPolicy(attempts=3, per_try_timeout_ms=500, on=("5xx",)),
    )
    new = base()
    new["productpage"] = sidecar("productpage", dest("reviews", beta, retried, versions=("v1", "v2", "v3")))
    assert triples(diff_meshes(base(), new)) == [
        (
            "reviews",
            "route.rules[beta]",
            "added",
            'rule "beta" added at position 1 of 2: header end-user = jason -> v2 100',
        ),
        (
            "reviews",
            "route.rules[default].retries",
            "modified",
            'rule "default" retries attempts 0 -> 3, on none -> 5xx, perTryTimeout none -> 500ms',
        ),
        ("reviews", "route.rules[default].timeout_ms", "modified", 'rule "default" timeout none -> 2s'),
        ("reviews", "versions", "modified", "versions v1, v3 -> v1, v2, v3 (added v2)"),
    ]


def test_removed_rule_reorder_and_fault() -> None:
    a = rule("a", ("v1", 100), matches=(RequestMatch(path=CompiledStringMatch(prefix="/a")),))
    b = rule("b", ("v3", 100), matches=(RequestMatch(path=CompiledStringMatch(prefix="/b")),))
    old = mesh(sidecar("p", dest("reviews", a, b, DEFAULT)))
    delay = CompiledFault(delay=DelayFault(fixed_ms=7000, percent=100))
    faulty = rule("a", ("v1", 100), matches=a.matches, fault=delay)
    new = mesh(sidecar("p", dest("reviews", b, faulty)))
    assert triples(diff_meshes(old, new)) == [
        ("reviews", "route.rules", "modified", "rule order a, b -> b, a (the first matching rule wins)"),
        ("reviews", "route.rules[a].fault", "modified", 'rule "a" fault none -> delay 7s for 100%'),
        ("reviews", "route.rules[default]", "removed", 'rule "default" removed (was: any request -> v1 90, v3 10)'),
    ]


def test_removed_service_and_lost_callers() -> None:
    new = mesh(sidecar("productpage"))
    assert triples(diff_meshes(base(), new)) == [
        ("reviews", "", "removed", "service (versions v1, v3) removed"),
    ]


def test_access_and_sidecar_wide_changes() -> None:
    new = base()
    new["reviews"] = sidecar(
        "reviews",
        access=Access(default="deny", policies=(allow("reviews", "productpage", methods=("GET",)),)),
        mtls="permissive",
    )
    assert triples(diff_meshes(base(), new)) == [
        ("reviews", "inbound.access.default", "modified", "access default (no policy) allow -> deny"),
        (
            "reviews",
            "inbound.access.policies[reviews]",
            "modified",
            'access policy "reviews" rules from productpage -> from productpage GET',
        ),
        ("reviews", "mtls", "modified", "mTLS strict -> permissive"),
    ]


def test_caller_gaining_a_destination() -> None:
    old = mesh(sidecar("a"), sidecar("b", dest("reviews", DEFAULT)), sidecar("reviews"))
    new = mesh(sidecar("a", dest("reviews", DEFAULT)), sidecar("b"), sidecar("reviews"))
    [change] = diff_meshes(old, new)
    assert (change.sidecar, change.path, change.old, change.new) == ("reviews", "callers", ["b"], ["a"])
    assert change.summary == "may now be called by a; may no longer be called by b"


def test_gateway_rules() -> None:
    def gw(service: str, port: int = 8080) -> SidecarConfig:
        return SidecarConfig(
            revision="r",
            kind="gateway",
            name="public",
            mesh="shop",
            trust_domain="shop.local",
            identity="spiffe://shop.local/gateway/public",
            gateway=CompiledGateway(
                name="public", port=port, rules=(CompiledGatewayRule(name="shop", service=service),)
            ),
        )

    old, new = {"gateway/public": gw("productpage")}, {"gateway/public": gw("frontend", 9090)}
    assert triples(diff_meshes(old, new)) == [
        ("gateway/public", "gateway.port", "modified", "port 8080 -> 9090"),
        ("gateway/public", "gateway.rules[shop].service", "modified", 'rule "shop" service productpage -> frontend'),
    ]
    [added] = diff_meshes({}, old)
    assert added.summary == "gateway on port 8080 (rules shop) added"


def test_reporters() -> None:
    new = base()
    new["productpage"] = sidecar("productpage", dest("reviews", rule("default", ("v1", 80), ("v3", 20))))
    changes = diff_meshes(base(), new)
    text = REPORTERS["text"]("abc", "work tree", changes)
    assert text.splitlines()[0] == '~ reviews: rule "default" weights v1 90 -> 80, v3 10 -> 20'
    assert "1 change in 1 sidecar" in text
    md = REPORTERS["markdown"]("abc", "def", changes)
    assert "#### `reviews`" in md and '**modified** rule "default" weights' in md
    doc = json.loads(REPORTERS["json"]("abc", "def", changes))
    assert doc["base"] == "abc" and doc["target"] == "def"
    assert set(doc["changes"][0]) >= {"sidecar", "path", "change", "old", "new", "summary"}
    assert REPORTERS["text"]("a", "b", []) == "no changes between a and b\n"


def test_a_change_shared_by_many_sidecars_is_one_line_for_people() -> None:
    names = [f"s{i}" for i in range(6)]
    old = mesh(*(sidecar(n) for n in names))
    new = mesh(*(sidecar(n, mtls="permissive") for n in names[:5]), sidecar("s5"))
    changes = diff_meshes(old, new)
    assert len(changes) == 5  # JSON keeps one item per sidecar
    text = REPORTERS["text"]("a", "b", changes).splitlines()
    assert text == [
        "~ 5 sidecars (s0, s1, s2 and 2 more): mTLS strict -> permissive",
        "5 changes in 5 sidecars (a -> b)",
    ]
    md = REPORTERS["markdown"]("a", "b", changes)
    assert "#### 5 sidecars (s0, s1, s2 and 2 more)" in md


def test_markdown_is_capped_for_pull_request_comments() -> None:
    names = [f"s{i:03d}" for i in range(450)]
    old = mesh(*(sidecar(n) for n in names))
    new = mesh(*(sidecar(n, access=Access(default="deny", policies=(allow(n, "x"),))) for n in names))
    md = REPORTERS["markdown"]("a", "b", diff_meshes(old, new))
    assert len(md) < 65_000
    assert "more; run `meshctl diff` to see them all" in md


def test_fields_without_special_words_are_still_reported() -> None:
    from pydantic import BaseModel

    from meshctl.diff.items import other_fields

    class Future(BaseModel):  # a contract that grew a field the diff does not know yet
        known: int = 0
        idle_timeout_ms: int | None = None

    [item] = other_fields(Future(idle_timeout_ms=1000), Future(idle_timeout_ms=1500), frozenset({"known"}), "x.")
    assert (item.path, item.summary) == ("x.idle_timeout_ms", "idleTimeout 1s -> 1500ms")


def test_markdown_escapes_what_would_render_as_markup() -> None:
    old = mesh(sidecar("s", access=Access(policies=(allow("s", "a"),))))
    new = mesh(sidecar("s", access=Access(policies=(allow("s", "a", methods=("GET",)),))))
    changes = diff_meshes(old, new)
    changes[0] = type(changes[0])(**{**changes[0].__dict__, "summary": "paths /r/* and /x_y/* <b>"})
    md = REPORTERS["markdown"]("a", "b", changes)
    assert r"paths /r/\* and /x\_y/\* \<b>" in md


def test_sticky_weight_change_says_how_many_users_move() -> None:
    from meshctl.contract import CompiledSticky

    def sticky(w1: int, w3: int) -> SidecarConfig:
        return sidecar("p", dest("reviews", rule("default", ("v1", w1), ("v3", w3), sticky=CompiledSticky(header="u"))))

    [change] = diff_meshes(mesh(sticky(90, 10)), mesh(sticky(80, 20)))
    prefix = 'rule "default" weights v1 90 -> 80, v3 10 -> 20 (sticky: about '
    assert change.summary.startswith(prefix) and change.summary.endswith("% of users change backend)")
    moved = int(change.summary[len(prefix) :].split("%")[0])
    assert 7 <= moved <= 13  # a 10-point shift moves about a tenth of the users, not all of them
