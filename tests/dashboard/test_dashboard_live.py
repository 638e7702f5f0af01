"""`meshctl dashboard` against the running example shop with traffic: the JSON API, then the
page in a real browser (Debian's Chromium driven by Playwright), then an apply watched live.

Screenshots go to tests/artifacts/dashboard/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import ARTIFACTS, Running, start_dashboard, stop
from tests.runtime.helpers import edit
from tests.support.git import commit_all
from tests.support.procs import free_port

pytestmark = pytest.mark.slow

EDGES = {
    "gateway/public->service/frontend/v1",
    "service/frontend/v1->service/catalog/v1",
    "service/frontend/v1->service/reviews/v1",
    "service/frontend/v1->service/reviews/v2",
    "service/reviews/v2->service/ratings/v1",
}
NODES = {
    "gateway/public", "service/frontend", "service/frontend/v1", "service/catalog",
    "service/catalog/v1", "service/reviews", "service/reviews/v1", "service/reviews/v2",
    "service/ratings", "service/ratings/v1",
}
CHROMIUM = "/usr/bin/chromium"
# Headless Chromium on a machine without outside network: no background connections.
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def live_edges(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in graph["edges"] if e["kind"] == "traffic" and e["requests"] > 0}


def every_edge_settled(graph: dict[str, Any]) -> bool:
    """Every live edge is drawn and its mTLS share known: that share is read from the callee's
    counters, which may reach the window a moment after the caller's (mtls is None until then)."""
    edges = live_edges(graph)
    return EDGES <= set(edges) and all(edges[e]["mtls"] is not None for e in EDGES)


def test_graph_api_has_every_service_and_edge_with_live_numbers(shop: Running) -> None:
    graph = shop.wait_for("/api/graph", every_edge_settled, what="every live edge and its mTLS share")
    assert NODES <= {n["id"] for n in graph["nodes"]}
    edges = live_edges(graph)
    for edge_id in EDGES:
        edge = edges[edge_id]
        assert edge["rps"] > 0 and edge["p99_ms"] is not None, edge
        assert edge["error_rate"] == 0.0, edge
        assert edge["mtls"] is True, edge  # strict mTLS in the shop: every hop verified
    # reviews v1 never calls ratings in this shop version: drawn, but idle
    idle = next(e for e in graph["edges"] if e["id"] == "service/reviews/v1->service/ratings/v1")
    assert idle["configured"] and idle["requests"] == 0 and idle["health"] == "idle"
    versions = {n["id"]: n for n in graph["nodes"] if n["kind"] == "version"}
    for node_id in NODES & set(versions):  # the shop's services this load reaches
        v = versions[node_id]
        assert v["health"] == "ok" and v["healthy"] == v["instances"], (node_id, v)
    assert versions["service/frontend/v1"]["instances"] == 2


def test_denied_traffic_is_drawn_apart(shop: Running) -> None:
    graph = shop.wait_for(
        "/api/graph",
        lambda g: {"service/ratings/v1->service/reviews:denied",
                   "service/frontend/v1->service/reviews:denied"} <= {e["id"] for e in g["edges"]},
        what="denied edges",
    )
    denied = {e["id"]: e for e in graph["edges"] if e["kind"] == "denied"}
    assert all(e["rps"] > 0 for e in denied.values())
    # refused POSTs are not counted as frontend -> reviews traffic of either version
    assert "service/ratings/v1->service/reviews/v1" not in {e["id"] for e in graph["edges"]}


def test_service_view_shows_rules_versions_shares_and_instances(shop: Running) -> None:
    view = shop.wait_for(
        "/api/services/reviews",
        lambda v: all(x["share"] for x in v["versions"]) and len(v["versions"][0]["series"]) >= 2,
        what="reviews shares",
    )
    assert [r["name"] for r in view["rules"]] == ["beta-testers", "default"]
    assert view["rules"][0]["match"] == "header end-user = jason"
    by_version = {v["version"]: v for v in view["versions"]}
    assert (by_version["v1"]["weight"], by_version["v2"]["weight"]) == (90.0, 10.0)
    # half the load is the beta tester (always v2): v2's live share is far above its weight
    assert by_version["v2"]["share"] > 30 and by_version["v1"]["share"] > 5
    assert abs(by_version["v1"]["share"] + by_version["v2"]["share"] - 100) < 0.5
    (instance,) = by_version["v1"]["instances"]
    assert instance["instance"] == "reviews-v1-0" and instance["healthy"]
    assert instance["revision"] and instance["pss_mb"] and instance["pss_mb"] > 5
    assert view["callers"] == ["frontend"]
    assert shop.api("/api/services/nope")[0] == 404


def test_explain_api_answers_and_names_what_to_highlight(shop: Running) -> None:
    status, x = shop.api("/api/explain", {"from": "frontend", "method": "GET",
                                          "url": "http://reviews/reviews/1",
                                          "headers": ["end-user: jason"]})
    assert status == 200, x
    assert x["answer"]["rule"] == "beta-testers" and x["answer"]["backend"] == "reviews/v2"
    assert x["highlight"]["edges"] == ["service/frontend/v1->service/reviews/v2"]
    status, x = shop.api("/api/explain", {"from": "ratings", "url": "http://reviews/reviews/1"})
    assert status == 200 and x["answer"]["status"] == 403 and x["highlight"]["refused"]
    status, x = shop.api("/api/explain", {"from": "nobody", "url": "http://reviews/"})
    assert status == 400 and "no sidecar named 'nobody'" in x["error"]
    status, x = shop.api("/api/explain", {"from": "frontend", "url": "http://reviews/", "headers": ["bad"]})
    assert status == 400 and "must look like 'name: value'" in x["error"]


def test_only_loopback_host_names_are_answered(shop: Running) -> None:
    status, body = shop.api("/api/graph", headers={"Host": "evil.example:80"})
    assert status == 421 and "127.0.0.1 only" in body["error"]


def ticks(url: str, count: int) -> list[dict[str, Any]]:
    """The first `count` server-sent ticks of a dashboard."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/api/events")
    resp = conn.getresponse()
    assert resp.getheader("content-type", "").startswith("text/event-stream")
    seen: list[dict[str, Any]] = []
    started = time.monotonic()
    while len(seen) < count and time.monotonic() - started < 15:
        line = resp.fp.readline().decode()
        if line.startswith("data: "):
            seen.append(json.loads(line[6:]))
    conn.close()
    return seen


def first_tick(url: str) -> dict[str, Any]:
    return ticks(url, 1)[0]


def test_events_stream_ticks(shop: Running) -> None:
    got = ticks(shop.url, 2)
    assert len(got) == 2 and got[1]["at"] > got[0]["at"]
    assert got[1]["graph"]["nodes"] and got[1]["rollout"]["revision"] and got[1]["error"] is None


def test_prometheus_as_the_source_draws_the_same_graph(shop: Running, tmp_path: Path) -> None:
    """A real Prometheus scraping every sidecar's admin /metrics; the dashboard reads its sums."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(binary).exists():
        pytest.skip("prometheus is not installed (scripts/system-deps installs it)")
    plan = json.loads((shop.state / "plan.json").read_text())
    targets = [f"127.0.0.1:{s['admin_port']}" for s in plan["sidecars"]]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: mesh\n    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
    )
    port = free_port()
    prom = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    dash = None
    try:
        dash, url = start_dashboard(shop.repo, "--prometheus", f"http://127.0.0.1:{port}")
        via_prom = Running(shop.repo, shop.state, url, shop.gateway, shop.load, dash)
        graph = via_prom.wait_for("/api/graph", every_edge_settled, timeout=90,
                                  what="every live edge and its mTLS share through Prometheus")
        for edge_id in EDGES:
            assert live_edges(graph)[edge_id]["mtls"] is True
        view = via_prom.wait_for("/api/services/reviews",
                                 lambda v: all(x["share"] for x in v["versions"]), what="shares")
        assert {v["version"] for v in view["versions"]} == {"v1", "v2"}
    finally:
        if dash is not None:
            stop(dash)
        prom.terminate()
        prom.wait(timeout=30)


def test_an_unreachable_prometheus_is_reported_not_fatal(shop: Running) -> None:
    dash, url = start_dashboard(shop.repo, "--prometheus", f"http://127.0.0.1:{free_port()}")
    try:
        quiet = Running(shop.repo, shop.state, url, shop.gateway, shop.load, dash)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, graph = quiet.api("/api/graph")
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200 and NODES <= {n["id"] for n in graph["nodes"]}
        tick = first_tick(url)
        assert tick["error"] and "127.0.0.1" in tick["error"], tick["error"]  # the page's banner
    finally:
        stop(dash)


# --- in the browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(shop: Running) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1500, "height": 900})
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto(shop.url)
        tab.wait_for_selector("#live.on", timeout=20_000)
        yield tab
        browser.close()
        assert not errors, errors


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def drawn(page: Any) -> dict[str, Any]:
    """What Cytoscape has drawn: element ids, their labels and classes."""
    return page.evaluate("""() => {
        const cy = window.meshDashboard.cy;
        return {
          nodes: cy.nodes().map((n) => n.id()),
          edges: Object.fromEntries(cy.edges().map((e) => [e.id(), {
            label: e.data('text'), color: e.data('color'), classes: e.classes() }])),
          explained: cy.elements('.explained').map((e) => e.id()),
          locks: document.querySelectorAll('#overlay .lock').length,
        };
    }""")


def click_node(page: Any, node_id: str) -> None:
    """A real mouse click where the node is drawn on the canvas."""
    x, y = page.evaluate(
        "(id) => { const p = window.meshDashboard.cy.getElementById(id).renderedPosition();"
        " return [p.x, p.y]; }", node_id)
    box = page.locator("#graph").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)


def test_page_draws_every_service_and_edge(shop: Running, page: Any) -> None:
    page.wait_for_function(
        "(ids) => ids.every((id) => { const e = window.meshDashboard.cy.getElementById(id);"
        " return e.nonempty() && /req\\/s/.test(e.data('text')); })",
        arg=sorted(EDGES), timeout=30_000,
    )
    seen = drawn(page)
    assert NODES <= set(seen["nodes"])
    for edge_id in EDGES:
        label = seen["edges"][edge_id]["label"]
        assert "req/s" in label and "% err" in label and "p99" in label and "ms" in label, label
        assert seen["edges"][edge_id]["color"] == "#16a34a"  # healthy: green
    assert seen["locks"] >= len(EDGES)  # a lock on every verified-mTLS edge
    assert "req/s" in page.inner_text("#caption")
    assert page.inner_text("#revision").startswith("revision ")
    shot(page, "graph")


def test_reviews_view_shows_v1_and_v2_with_live_shares(page: Any) -> None:
    click_node(page, "service/reviews/v2")
    page.wait_for_selector("[data-testid=share-v2]", timeout=10_000)
    page.wait_for_function(
        "() => ['v1','v2'].every((v) => /^\\d+\\.\\d %$/.test("
        "document.querySelector(`[data-testid=share-${v}]`)?.textContent || ''))",
        timeout=15_000,
    )
    panel = page.inner_text("[data-testid=service-view]")
    assert "reviews" in panel and "beta-testers" in panel and "default" in panel
    assert "90 % set" in panel and "10 % set" in panel
    assert "reviews-v1-0" in panel and "reviews-v2-0" in panel and "MB" in panel
    shares = [float(page.inner_text(f"[data-testid=share-{v}]").split()[0]) for v in ("v1", "v2")]
    assert abs(sum(shares) - 100) < 0.5 and all(s > 0 for s in shares)
    assert page.locator(".spark svg path").count() >= 4  # time series drawn
    shot(page, "reviews")


def test_explain_box_answers_and_highlights_the_path(page: Any) -> None:
    page.click("button[data-tab=explain]")
    page.select_option("#explain-from", "frontend")
    page.fill("#explain-url", "http://reviews/reviews/1")
    page.fill("textarea[name=headers]", "end-user: jason")
    page.click("#explain-form button.primary")
    page.wait_for_selector("[data-testid=explain-answer]", timeout=10_000)
    answer = page.inner_text("[data-testid=explain-answer]")
    assert "beta-testers" in answer and "reviews/v2" in answer and "forwarded" in answer
    seen = drawn(page)
    assert "service/frontend/v1->service/reviews/v2" in seen["explained"]
    assert "service/frontend/v1->service/reviews/v1" not in seen["explained"]
    assert "faded" in seen["edges"]["service/frontend/v1->service/reviews/v1"]["classes"]
    shot(page, "explain")
    page.fill("#explain-url", "http://reviews/reviews/1")
    page.click("#explain-clear")
    assert drawn(page)["explained"] == []


def test_a_promotion_under_way_appears_in_the_rollout_view(shop: Running, page: Any) -> None:
    """The journal `meshctl promote` keeps while it runs, written by promote's own code."""
    from meshctl.rollout import promotion as journal

    journal.write(shop.state, journal.Journal(
        service="reviews", target="v2", source="v1", rule="default", steps=[5, 25, 50, 100],
        interval_ms=60_000, passed=1, last_good={"v1": 95, "v2": 5}, commits=["abc"],
    ))
    try:
        page.click("button[data-tab=rollout]")
        page.wait_for_selector("[data-testid=promotion]", timeout=15_000)
        card = page.inner_text("[data-testid=promotion]")
        assert "reviews v1 → v2" in card and "step 2 of 4" in card and "60 s" in card
        assert page.locator("[data-testid=promotion] .step.passed").count() == 1
        assert page.locator("[data-testid=promotion] .step.current").inner_text() == "25 %"
        assert "promoting reviews v2" in page.inner_text("#rollout-chip")
    finally:
        journal.remove(shop.state)
    page.wait_for_selector("[data-testid=promotion]", state="detached", timeout=15_000)


def test_apply_in_progress_appears_in_the_rollout_view(shop: Running, page: Any) -> None:
    edit(shop.repo / "mesh.d/routes/reviews.yaml", "{version: v1, weight: 90}", "{version: v1, weight: 50}")
    edit(shop.repo / "mesh.d/routes/reviews.yaml", "{version: v2, weight: 10}", "{version: v2, weight: 50}")
    target = commit_all(shop.repo, "reviews: 50/50")
    page.click("button[data-tab=rollout]")
    apply = subprocess.Popen(
        [sys.executable, "-m", "meshctl", "apply", "--window", "6s"], cwd=shop.repo,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        page.wait_for_selector("[data-testid=apply-progress]:has-text('In progress')", timeout=60_000)
        page.wait_for_selector("[data-testid=apply-progress] .gate-nums:has-text('requests')", timeout=60_000)
        live = page.inner_text("[data-testid=apply-progress]")
        assert "canary" in live and "frontend-v1-0" in live and "reviews: 50/50" in live
        assert "max 1 %" in live  # the gate's limit next to its live number
        assert page.is_visible("#rollout-chip")
        shot(page, "rollout")
        out, err = apply.communicate(timeout=120)
    finally:
        if apply.poll() is None:
            apply.kill()
            apply.wait()
    assert apply.returncode == 0, err
    page.wait_for_selector("[data-testid=apply-progress]:has-text('succeeded')", timeout=20_000)
    view = page.inner_text("[data-testid=rollout-view]")
    assert target[:10] in view and "reviews: 50/50" in view and "shop: gate on errors only" in view
    assert not page.is_visible("#rollout-chip")
