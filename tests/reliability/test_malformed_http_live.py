"""Raw, malformed HTTP to each listener of real sidecars (outbound, inbound, gateway): every
case answered or closed within 5 s, the sidecar still ready, no traceback, every answer it
made counted with its real code; then a bounded hypothesis fuzz of the same kind."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshctl.contract import (
    CompiledBackend,
    CompiledGateway,
    CompiledGatewayRule,
    CompiledRouteRule,
    CompiledStringMatch,
    ConnectionLimits,
    RequestMatch,
)
from tests.reliability.malformed_http import CASES
from tests.support.configs import destination, gateway_config, service_config
from tests.support.procs import App, Sidecar, bindings_for, http_get, start_app, start_sidecar

pytestmark = pytest.mark.slow
REGEX_RULE = CompiledRouteRule(
    name="regex", matches=(RequestMatch(path=CompiledStringMatch(regex="/(a+)+$")),),
    backends=(CompiledBackend(service="orders", version="v1", weight=100),))
DEFAULT = CompiledRouteRule(name="default", backends=(CompiledBackend(service="orders", version="v1", weight=100),))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Sidecar]]:
    tmp = Path(tmp_path_factory.mktemp("malformed"))
    app: App = start_app("orders-v1")
    inbound = start_sidecar(tmp / "inbound", service_config("orders"),
                            bindings_for(outbound=False, app=app.address))
    dest = destination("orders", ("v1",), (REGEX_RULE, DEFAULT))
    endpoints = {"orders": {"v1": (inbound.inbound_address,)}}
    outbound = start_sidecar(tmp / "outbound", service_config("checkout", (dest,)),
                             bindings_for(inbound=False, endpoints=endpoints))
    rules = (CompiledGatewayRule(name="all", matches=(RequestMatch(path=CompiledStringMatch(prefix="/")),),
                                 service="orders"),)
    gateway = start_sidecar(tmp / "gateway", gateway_config(
        "public", CompiledGateway(name="public", port=0, rules=rules), (dest,)),
        bindings_for(inbound=False, version=None, endpoints=endpoints))
    yield {"outbound": outbound, "inbound": inbound, "gateway": gateway}
    for sc in (outbound, gateway, inbound):
        sc.proc.kill()
    app.stop()


def _address(sc: Sidecar, role: str) -> tuple[str, int]:
    port = {"outbound": sc.bindings.listeners.outbound, "inbound": sc.bindings.listeners.inbound,
            "gateway": sc.bindings.listeners.outbound or (sc.config.gateway.port if sc.config.gateway else 0)}[role]
    assert port
    return "127.0.0.1", int(port)


def send_raw(address: tuple[str, int], payload: bytes, timeout: float = 5.0,
             half_close: bool = True, until_head: bool = False) -> tuple[bytes, float]:
    """Send bytes, half-close, read until the peer closes or `timeout`; (answer, seconds)."""
    start = time.monotonic()
    with socket.create_connection(address, timeout=timeout) as sock:
        try:
            sock.sendall(payload)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            return b"", time.monotonic() - start  # the sidecar closed while we sent: refused
        chunks = []
        try:
            while (chunk := sock.recv(65536)) and time.monotonic() - start < timeout:
                chunks.append(chunk)
                if until_head and b"\r\n\r\n" in b"".join(chunks):
                    break  # an answer came; whether the connection stays open is not the point
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks), time.monotonic() - start


def _payload(template: bytes, role: str) -> bytes:
    target = b"http://orders/x" if role == "outbound" else b"/x"
    return template.replace(b"{target}", target)


def _status(answer: bytes) -> int | None:
    m = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return int(m.group(1)) if m else None


def _healthy(sc: Sidecar) -> None:
    assert http_get(f"{sc.admin_url}/ready", timeout=5)[0] == 200
    assert "Traceback" not in sc.stderr()
    assert 'response_code="0"' not in sc.metrics()


@pytest.mark.parametrize("role", ["outbound", "inbound", "gateway"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_request_is_answered_or_closed_fast(mesh: dict[str, Sidecar], role: str, name: str) -> None:
    sc = mesh[role]
    # Answered (a status line and head) or closed within 5 s; reading stops at the head. Once,
    # under CI load, a gateway logged its 400 DPE at once while the client saw no close within
    # 5 s of its half-close: what is asserted here is the answer, not the close after it.
    answer, seconds = send_raw(_address(sc, role), _payload(CASES[name], role), until_head=True)
    assert seconds < 5.0, f"{name} on {role} held for {seconds:.1f} s"
    status = _status(answer)
    assert status is None or status < 500 or status in (502, 503), (name, answer[:200])
    assert b"mitmproxy" not in answer.lower() and b"traceback" not in answer.lower()


def test_control_bytes_in_a_header_get_400_dpe_and_are_counted(mesh: dict[str, Sidecar]) -> None:
    """The defect: `X-A: a\\0b` crashed the handler: 502 UF, a traceback, response_code="0"."""
    for role, sc in mesh.items():
        answer, _ = send_raw(_address(sc, role), _payload(CASES["nul-in-header-value"], role),
                             half_close=False)
        assert _status(answer) == 400, (role, answer[:300])
        assert b"x-mesh-response-flags: DPE" in answer.lower().replace(b"dpe", b"DPE")
        _healthy(sc)
        assert 'response_code="400"' in sc.metrics()


def test_a_method_that_is_no_http_token_gets_400_dpe(mesh: dict[str, Sidecar]) -> None:
    """Found by the fuzz: `G\\0T` reached the upstream client, which raised (a traceback)."""
    for role, sc in mesh.items():
        answer, _ = send_raw(_address(sc, role), _payload(CASES["nul-in-method"], role),
                             half_close=False)
        assert _status(answer) == 400, (role, answer[:300])
        assert b"x-mesh-response-flags: dpe" in answer.lower(), (role, answer[:300])
        _healthy(sc)


def test_sidecars_survive_the_corpus(mesh: dict[str, Sidecar]) -> None:
    for sc in mesh.values():
        _healthy(sc)


_header_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(method=st.sampled_from([b"GET", b"POST", b"PUT", b"BREW", b"\x00"]),
       path=st.binary(max_size=60), name=_header_text, value=_header_text,
       body=st.binary(max_size=100), role=st.sampled_from(["outbound", "inbound", "gateway"]))
def test_fuzzed_requests_never_crash_a_listener(mesh: dict[str, Sidecar], method: bytes, path: bytes,
                                                name: str, value: str, body: bytes, role: str) -> None:
    target = (b"http://orders/" if role == "outbound" else b"/") + path.replace(b" ", b"%20")
    payload = (method + b" " + target + b" HTTP/1.1\r\nHost: orders\r\n"
               + name.encode("utf-8", "surrogatepass") + b": " + value.encode("utf-8", "surrogatepass")
               + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    answer, seconds = send_raw(_address(mesh[role], role), payload, until_head=True)
    assert seconds < 5.0, payload[:200]
    status = _status(answer)
    assert status is None or status != 500, answer[:300]
    assert b"traceback" not in answer.lower()


def test_after_the_fuzz_every_sidecar_is_healthy(mesh: dict[str, Sidecar]) -> None:
    for sc in mesh.values():
        _healthy(sc)


def test_half_open_connections_are_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    """The defect: 1,000 half-open connections were held past 150 s. With the idle timeout
    set to 2 s for the test (and no header timeout), a connection that never finishes its
    headers is closed."""
    limits = ConnectionLimits(idle_timeout_ms=2_000, request_headers_timeout_ms=None)
    sc = start_sidecar(tmp_path / "idle", service_config("checkout", (destination("orders"),), connections=limits),
                       bindings_for(inbound=False, endpoints={"orders": {"v1": ("127.0.0.1:9",)}}))
    try:
        socks = [socket.create_connection(_address(sc, "outbound"), timeout=10) for _ in range(20)]
        for sock in socks:
            sock.sendall(b"GET http://orders/ HTTP/1.1\r\nHost: ord")  # never finished
        start = time.monotonic()
        for sock in socks:
            assert sock.recv(1024) == b""  # closed by the sidecar
        assert time.monotonic() - start < 8
        _healthy(sc)
    finally:
        sc.proc.kill()
