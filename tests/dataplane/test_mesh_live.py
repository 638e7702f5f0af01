"""The two-hop mesh path (outbound sidecar -> inbound sidecar -> app), gateways, streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from meshctl.contract import (
    Access,
    CompiledAccessPolicy,
    CompiledAccessRule,
    CompiledBackend,
    CompiledDirectResponse,
    CompiledGateway,
    CompiledGatewayRule,
    CompiledMirror,
    CompiledRateLimit,
    CompiledRedirect,
    CompiledRouteRule,
    CompiledStringMatch,
    Inbound,
    RequestMatch,
    dump_json,
)
from tests.dataplane.conftest import fire, get
from tests.support.configs import destination, gateway_config, service_config, split
from tests.support.procs import (
    App,
    Sidecar,
    bindings_for,
    start_sidecar,
    write_atomic,
)


@pytest.fixture(scope="module")
def inbound(tmp_path_factory: pytest.TempPathFactory, apps: dict[str, App]) -> Iterator[Sidecar]:
    """The sidecar of reviews v1, in front of app v1."""
    bindings = bindings_for(outbound=False, app=apps["v1"].address, version="v1")
    sc = start_sidecar(Path(tmp_path_factory.mktemp("inbound")), service_config("reviews"),
                       bindings)
    yield sc
    assert sc.stop() == 0


@pytest.fixture(scope="module")
def mesh(sidecar: Sidecar, inbound: Sidecar, apps: dict[str, App]) -> Sidecar:
    """The outbound sidecar, now calling reviews v1 through its inbound sidecar."""
    sidecar.bindings = sidecar.bindings.model_copy(update={"endpoints": {
        "reviews": {"v1": (inbound.inbound_address,), "v2": (apps["v2"].address,)}}})
    write_atomic(sidecar.bindings_path, dump_json(sidecar.bindings))
    sidecar.reload(service_config("productpage", (destination("reviews", ("v1", "v2")),),
                                  revision="mesh-0"))
    return sidecar


def only_v1(revision: str, **rule: object) -> Sidecar | object:
    return service_config("productpage", (destination(
        "reviews", ("v1", "v2"), (split("reviews", {"v1": 100}, **rule),)),), revision=revision)


def test_two_hop_path_reaches_the_app_with_trace_and_telemetry(
    mesh: Sidecar, inbound: Sidecar
) -> None:
    mesh.reload(only_v1("two-hop"))  # type: ignore[arg-type]
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    results = fire(get("http://reviews/two-hop", 20, {"traceparent": incoming}),
                   mesh.outbound_proxy)
    assert all(r.status == 200 and r.app == "v1" for r in results)
    seen = results[0].json()["headers"]
    assert seen["Host"] == "reviews"
    assert seen["traceparent"].split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert not any(h.lower().startswith("x-mesh-") for h in seen)  # internal headers stripped
    metrics = inbound.metrics()
    assert 'reporter="destination"' in metrics and 'source_workload="productpage-v1"' in metrics


def test_access_policy_is_enforced_on_the_inbound_side(mesh: Sidecar, inbound: Sidecar) -> None:
    mesh.reload(only_v1("access"))  # type: ignore[arg-type]
    access = Access(policies=(
        CompiledAccessPolicy(name="no-admin", action="deny", rules=(CompiledAccessRule(paths=("/admin*",)),)),
        CompiledAccessPolicy(name="mesh-only", rules=(
            CompiledAccessRule(sources=("*",)),  # any mesh identity (needs mTLS)
            CompiledAccessRule(methods=("GET",), paths=("/public/*",)),
        )),
    ))
    inbound.reload(service_config("reviews", inbound=Inbound(service="reviews", access=access),
                                  revision="access"))
    admin, public, post, other = fire(
        [get("http://reviews/admin/x")[0], get("http://reviews/public/x")[0],
         ("POST", "http://reviews/public/x", {}, b"x"), get("http://reviews/other")[0]],
        mesh.outbound_proxy, concurrency=1)
    assert (admin.status, admin.flags) == (403, "RBAC")
    assert public.status == 200
    assert (post.status, post.flags) == (403, "RBAC")  # no identity: only rules without sources
    assert (other.status, other.flags) == (403, "RBAC")
    inbound.reload(service_config("reviews", revision="open"))


def test_inbound_rate_limit_answers_429_rl(mesh: Sidecar, inbound: Sidecar) -> None:
    mesh.reload(only_v1("ratelimit"))  # type: ignore[arg-type]
    inbound.reload(service_config("reviews", inbound=Inbound(
        service="reviews", rate_limit=CompiledRateLimit(requests_per_second=2, burst=5)),
        revision="ratelimit"))
    t0 = time.monotonic()
    results = fire(get("http://reviews/rl", 30), mesh.outbound_proxy, concurrency=10)
    elapsed = time.monotonic() - t0
    limited = [r for r in results if r.status == 429]
    assert all(r.flags == "RL" for r in limited)
    admitted = len(results) - len(limited)
    # The burst of 5, plus 2 per second of the (machine-dependent) time the requests took.
    assert 5 <= admitted <= 6 + 2 * elapsed, (admitted, elapsed)
    inbound.reload(service_config("reviews", revision="open"))


def test_mirror_copies_traffic_and_drops_the_answer(mesh: Sidecar, apps: dict[str, App]) -> None:
    mesh.reload(only_v1("mirror", mirror=CompiledMirror(service="reviews", version="v2",
                                                   percent=100)))  # type: ignore[arg-type]
    apps["v2"].configure(reset=True, delay_ms=3000)
    try:
        results = fire(get("http://reviews/mirrored", 20), mesh.outbound_proxy, concurrency=4)
        assert all(r.status == 200 and r.app == "v1" for r in results)
        # Each mirror copy takes 3 s to answer; no caller waited for one.
        assert max(r.elapsed for r in results) < 2.5, [r.elapsed for r in results]
        deadline = time.monotonic() + 15
        while apps["v2"].stats()["paths"].get("/mirrored", 0) < 20:
            assert time.monotonic() < deadline, apps["v2"].stats()
            time.sleep(0.1)
        assert apps["v2"].stats()["hosts"] == {"reviews-shadow": 20}
    finally:
        apps["v2"].configure(delay_ms=0)


def test_large_bodies_websockets_and_streams_pass_through(mesh: Sidecar) -> None:
    mesh.reload(only_v1("streams"))  # type: ignore[arg-type]
    big = b"x" * (3 * 1024 * 1024)
    upload = fire([("POST", "http://reviews/upload", {}, big)], mesh.outbound_proxy)[0]
    assert upload.status == 200 and upload.json()["body_len"] == len(big)

    async def websocket_and_stream() -> tuple[str, float, float]:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect("http://reviews/ws", proxy=mesh.outbound_proxy) as ws:
                await ws.send_str("hello")
                echoed = (await ws.receive(timeout=10)).data
            t0 = time.monotonic()
            async with session.get(
                "http://reviews/stream?chunks=4&interval_ms=400", proxy=mesh.outbound_proxy,
                headers={"accept": "text/event-stream"},
            ) as resp:
                await resp.content.readline()
                first = time.monotonic() - t0
                await resp.read()
                total = time.monotonic() - t0
        return echoed, first, total

    size = 3 * 1024 * 1024  # a large answer to a GET is streamed, not held in memory
    download = fire(get(f"http://reviews/big?size={size}"), mesh.outbound_proxy)[0]
    assert download.status == 200 and len(download.body) == size and download.app == "v1"
    assert [e["streamed"] for e in mesh.access_log() if e["path"].startswith("/big")] == [True]
    seen = download.json()["headers"]
    assert not any(h.lower().startswith("x-mesh-") for h in seen), seen
    echoed, first, total = asyncio.run(websocket_and_stream())
    assert echoed == "v1:hello"
    assert first < 1.0 and total > 1.2, (first, total)  # bytes arrive as they are produced


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, inbound: Sidecar) -> Iterator[Sidecar]:
    rules = (
        CompiledGatewayRule(name="moved", matches=(RequestMatch(path=CompiledStringMatch(prefix="/old")),),
                    redirect=CompiledRedirect(path="/shop", status=302)),
        CompiledGatewayRule(name="hello", matches=(RequestMatch(path=CompiledStringMatch(exact="/hello")),),
                    respond=CompiledDirectResponse(status=200, body="hi")),
        CompiledGatewayRule(name="shop", matches=(RequestMatch(path=CompiledStringMatch(prefix="/shop")),),
                    service="reviews"),
    )
    route = CompiledRouteRule(name="all", timeout_ms=5000,
                      backends=(CompiledBackend(service="reviews", version="v1", weight=100),))
    config = gateway_config("public", CompiledGateway(name="public", port=0, rules=rules),
                            (destination("reviews", ("v1",), (route,)),))
    bindings = bindings_for(inbound=False, version=None, endpoints={
        "reviews": {"v1": (inbound.inbound_address,)}})
    sc = start_sidecar(Path(tmp_path_factory.mktemp("gateway")), config, bindings)
    yield sc
    assert sc.stop() == 0


def test_gateway_applies_its_rules_then_the_route(gateway: Sidecar) -> None:
    url = gateway.gateway_url
    shop, moved, hello, nothing = fire(
        [get(url + "/shop/items")[0], get(url + "/old")[0], get(url + "/hello")[0],
         get(url + "/nope")[0]], concurrency=1)
    assert shop.status == 200 and shop.app == "v1" and shop.json()["path"] == "/shop/items"
    assert shop.json()["headers"]["Host"] == "reviews"
    assert moved.status == 302 and moved.headers["Location"].endswith("/shop")
    assert (hello.status, hello.body) == (200, b"hi")
    assert (nothing.status, nothing.flags) == (404, "NR")
    entry = [e for e in gateway.access_log() if e["path"] == "/shop/items"][-1]
    assert entry["route_name"] == "shop/all" and entry["source_workload"] == "gateway-public"


def test_tcp_service_bytes_pass_through_a_connect_tunnel(tmp_path: Path, mesh: Sidecar) -> None:
    import socket
    import socketserver
    import threading

    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            while data := self.request.recv(65536):
                self.request.sendall(data.upper())

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    echo = f"127.0.0.1:{server.server_address[1]}"
    db = start_sidecar(tmp_path / "db", service_config(
        "db", inbound=Inbound(service="db", protocol="tcp"), revision="db"),
        bindings_for(outbound=False, app=echo))
    try:
        mesh.bindings = mesh.bindings.model_copy(update={"endpoints": {
            **mesh.bindings.endpoints, "db": {"v1": (db.inbound_address,)}}})
        write_atomic(mesh.bindings_path, dump_json(mesh.bindings))
        tcp_dest = destination("db").model_copy(update={"protocol": "tcp"})
        mesh.reload(service_config("productpage", (destination("reviews", ("v1", "v2")),
                                                   tcp_dest), revision="tcp"))
        port = mesh.bindings.listeners.outbound
        assert port is not None
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n")
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            conn.sendall(b"\x00\x01raw bytes, not http\n")
            received = b""
            while len(received) < 22:
                received += conn.recv(4096)
        assert received == b"\x00\x01RAW BYTES, NOT HTTP\n"
        # Istio's TCP metrics on the inbound relay (the connection is closed by now)
        deadline = time.monotonic() + 10
        while 'istio_tcp_connections_closed_total{' not in (text := db.metrics()):
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        samples = {line.split("{")[0]: (line, float(line.rsplit(" ", 1)[1]))
                   for line in text.splitlines() if line.startswith("istio_tcp_")}
        assert samples["istio_tcp_received_bytes_total"][1] == 22
        assert samples["istio_tcp_sent_bytes_total"][1] == 22
        assert samples["istio_tcp_connections_opened_total"][1] == 1
        assert 'request_protocol="tcp"' in samples["istio_tcp_sent_bytes_total"][0]
        assert 'reporter="destination"' in samples["istio_tcp_sent_bytes_total"][0]
    finally:
        db.stop()
        server.shutdown()
