"""Listener connection limits on real sidecars: a slow-loris client is cut at the request-header
timeout, an idle keep-alive connection at the idle timeout, and connection N+1 over a listener's
maxConnections is closed on accept while the first N are served (outbound and gateway listeners,
each gateway port by its own listener's limits)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshctl.contract import (
    CompiledGateway,
    CompiledGatewayRule,
    ConnectionLimits,
    GatewayListener,
)
from tests.support.configs import destination, gateway_config, service_config
from tests.support.procs import App, Sidecar, bindings_for, start_app, start_sidecar

pytestmark = pytest.mark.slow
LIMITS = ConnectionLimits(request_headers_timeout_ms=1_000, idle_timeout_ms=3_000, max_connections=5)
REQUEST = b"GET http://orders/ HTTP/1.1\r\nHost: orders\r\n\r\n"


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    app = start_app("orders-v1")
    yield app
    app.stop()


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory, app: App) -> Iterator[Sidecar]:
    sc = start_sidecar(Path(tmp_path_factory.mktemp("limits")),
                       service_config("checkout", (destination("orders"),), connections=LIMITS),
                       bindings_for(inbound=False, endpoints={"orders": {"v1": (app.address,)}}))
    yield sc
    sc.proc.kill()


def _outbound(sc: Sidecar) -> tuple[str, int]:
    assert sc.bindings.listeners.outbound
    return "127.0.0.1", sc.bindings.listeners.outbound


def _request(sock: socket.socket, payload: bytes = REQUEST) -> bytes:
    """One request on an open connection; the answer's head and body (content-length)."""
    sock.sendall(payload)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head


def _closed_after(sock: socket.socket, limit_s: float) -> float:
    """Seconds until the peer closed the connection (recv gives b"" or a reset)."""
    start = time.monotonic()
    sock.settimeout(limit_s)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def _metric(sc: Sidecar, name: str, listener: str) -> float:
    for line in sc.metrics().splitlines():
        if line.startswith(f'{name}{{listener="{listener}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_slow_loris_is_cut_at_the_header_timeout(sidecar: Sidecar) -> None:
    """Header bytes every 0.25 s keep the connection from ever being idle: only the 1 s
    request-header timeout (not the 3 s idle timeout) closes it."""
    before = _metric(sidecar, "meshctl_downstream_rq_header_timeout_total", "outbound")
    with socket.create_connection(_outbound(sidecar), timeout=10) as sock:
        start = time.monotonic()
        closed_at = None
        for byte in REQUEST[:-4] * 10:  # never the blank line that ends the headers
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed_at = time.monotonic() - start
                break
            sock.settimeout(0.25)
            try:
                if sock.recv(1024) == b"":
                    closed_at = time.monotonic() - start
                    break
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed_at = time.monotonic() - start
                break
            if time.monotonic() - start > 8:
                break
    assert closed_at is not None, "slow-loris connection was never closed"
    assert 0.9 <= closed_at < 2.5, closed_at
    assert _metric(sidecar, "meshctl_downstream_rq_header_timeout_total", "outbound") == before + 1


def test_keep_alive_waits_longer_than_the_header_timeout(sidecar: Sidecar) -> None:
    """The header timer starts at a request's first byte: a keep-alive connection idle for 1.8 s
    (past the header timeout, within the idle timeout) still takes the next request, and a
    request whose answer takes 1.5 s is not cut."""
    with socket.create_connection(_outbound(sidecar), timeout=10) as sock:
        assert _request(sock).startswith(b"HTTP/1.1 200")
        time.sleep(1.8)
        assert _request(sock).startswith(b"HTTP/1.1 200")
        slow = b"GET http://orders/?delay_ms=1500 HTTP/1.1\r\nHost: orders\r\n\r\n"
        assert _request(sock, slow).startswith(b"HTTP/1.1 200")


def test_idle_connection_is_closed_at_the_idle_timeout(sidecar: Sidecar) -> None:
    before = _metric(sidecar, "meshctl_downstream_cx_idle_timeout_total", "outbound")
    with socket.create_connection(_outbound(sidecar), timeout=10) as sock:
        assert _request(sock).startswith(b"HTTP/1.1 200")
        seconds = _closed_after(sock, 10)
    assert 2.5 <= seconds < 5.5, seconds
    assert _metric(sidecar, "meshctl_downstream_cx_idle_timeout_total", "outbound") == before + 1


def test_connection_over_the_limit_is_closed_while_the_first_are_served(sidecar: Sidecar) -> None:
    before = _metric(sidecar, "meshctl_downstream_cx_overflow_total", "outbound")
    first = [socket.create_connection(_outbound(sidecar), timeout=10) for _ in range(LIMITS.max_connections)]
    try:
        for sock in first:
            assert _request(sock).startswith(b"HTTP/1.1 200")
        with socket.create_connection(_outbound(sidecar), timeout=10) as extra:
            assert _closed_after(extra, 5) < 2
        assert _metric(sidecar, "meshctl_downstream_cx_overflow_total", "outbound") == before + 1
        for sock in first:  # still served
            assert _request(sock).startswith(b"HTTP/1.1 200")
        first.pop().close()
        time.sleep(0.3)
        with socket.create_connection(_outbound(sidecar), timeout=10) as again:  # room again
            assert _request(again).startswith(b"HTTP/1.1 200")
    finally:
        for sock in first:
            sock.close()


def test_gateway_listeners_have_their_own_limits(tmp_path: Path, app: App) -> None:
    one = ConnectionLimits(max_connections=1)
    gateway = CompiledGateway(
        name="public", port=0, rules=(CompiledGatewayRule(name="all", service="orders"),),
        listeners=(GatewayListener(name="tight", port=18081, connections=one),
                   GatewayListener(name="wide", port=18082)))
    bindings = bindings_for(inbound=False, version=None, endpoints={"orders": {"v1": (app.address,)}})
    from tests.support.procs import free_port
    ports = {"tight": free_port(), "wide": free_port()}
    bindings = bindings.model_copy(update={"listeners": bindings.listeners.model_copy(
        update={"outbound": None, "gateway": ports})})
    sc = start_sidecar(tmp_path / "gw", gateway_config("public", gateway, (destination("orders"),)), bindings)
    request = b"GET / HTTP/1.1\r\nHost: orders\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", ports["tight"]), timeout=10) as held:
            assert _request(held, request).startswith(b"HTTP/1.1 200")
            with socket.create_connection(("127.0.0.1", ports["tight"]), timeout=10) as extra:
                assert _closed_after(extra, 5) < 2
            wide = [socket.create_connection(("127.0.0.1", ports["wide"]), timeout=10) for _ in range(3)]
            for sock in wide:
                assert _request(sock, request).startswith(b"HTTP/1.1 200")
                sock.close()
        assert _metric(sc, "meshctl_downstream_cx_overflow_total", "tight") == 1
        assert _metric(sc, "meshctl_downstream_cx_overflow_total", "wide") == 0
    finally:
        sc.proc.kill()
