"""Retries of a non-idempotent request (POST) through real sidecars, as Envoy reads them.

A try that never reached an app may go to another endpoint whatever the method (Envoy's
`connect-failure`, `reset-before-request`): the endpoint refused the connection, or its
sidecar answered 503 `UF` because its app refused. A try that did reach an app which then
reset the connection is not retried, unless the policy says `nonIdempotent` (the app may have
acted on it): the app sees the POST exactly once."""

from __future__ import annotations

import socket
import threading
import urllib.request
from pathlib import Path

import pytest

from meshctl.contract import CompiledBackend, CompiledRouteRule, RetryPolicy
from tests.support.configs import destination, service_config
from tests.support.procs import App, Sidecar, bindings_for, free_port, start_app, start_sidecar

pytestmark = pytest.mark.slow
V1 = CompiledBackend(service="orders", version="v1", weight=100)
COMPILED_DEFAULT = RetryPolicy(attempts=2, on=("connect-failure", "refused-stream"))


class ResettingApp:
    """Reads a request, then resets the connection (SO_LINGER 0): the app saw it, never answered."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.seen = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    continue
                if data:
                    with self._lock:
                        self.seen += 1
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    def close(self) -> None:
        self.sock.close()


def _replica(tmp: Path, name: str, app: str) -> Sidecar:
    return start_sidecar(tmp / f"sc-{name}", service_config("orders"),
                         bindings_for(outbound=False, app=app, instance=name))


def _caller(tmp: Path, endpoints: tuple[str, ...], retries: RetryPolicy) -> Sidecar:
    rule = CompiledRouteRule(name="default", backends=(V1,), retries=retries)
    return start_sidecar(tmp / "caller", service_config("checkout", (destination("orders", ("v1",), (rule,)),)),
                         bindings_for(inbound=False, endpoints={"orders": {"v1": endpoints}}))


def _post(caller: Sidecar, n: int) -> list[tuple[int, str]]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": caller.outbound_proxy}))
    answers = []
    for i in range(n):
        request = urllib.request.Request("http://orders/orders", data=f'{{"n": {i}}}'.encode(), method="POST")
        try:
            with opener.open(request, timeout=10) as resp:
                answers.append((resp.status, resp.headers.get("x-mesh-response-flags", "")))
        except urllib.error.HTTPError as exc:
            answers.append((exc.code, exc.headers.get("x-mesh-response-flags", "")))
    return answers


def test_post_refused_by_an_endpoint_goes_to_the_other(tmp_path: Path, procs: list[App | Sidecar]) -> None:
    """One endpoint's port refuses connections (its sidecar is gone): every POST is served."""
    app = start_app("orders-v1")
    good = _replica(tmp_path, "r2", app.address)
    caller = _caller(tmp_path, (f"127.0.0.1:{free_port()}", good.inbound_address), COMPILED_DEFAULT)
    procs += [app, good, caller]
    answers = _post(caller, 12)
    assert [status for status, _ in answers] == [200] * 12, answers
    assert app.stats()["paths"].get("/orders") == 12


def test_post_whose_app_refused_goes_to_the_other(tmp_path: Path, procs: list[App | Sidecar]) -> None:
    """One endpoint's sidecar runs but its app refuses (503 UF from that sidecar): the app never
    saw the POST, so it goes to the other endpoint."""
    app = start_app("orders-v1")
    dead_app = _replica(tmp_path, "r1", f"127.0.0.1:{free_port()}")
    good = _replica(tmp_path, "r2", app.address)
    caller = _caller(tmp_path, (dead_app.inbound_address, good.inbound_address), COMPILED_DEFAULT)
    procs += [app, dead_app, good, caller]
    answers = _post(caller, 12)
    assert [status for status, _ in answers] == [200] * 12, answers
    assert app.stats()["paths"].get("/orders") == 12


def test_post_reset_by_the_app_is_not_retried(tmp_path: Path, procs: list[App | Sidecar]) -> None:
    """The app read the POST and reset: 503 UC, one try, the app saw it exactly once."""
    resetting = ResettingApp()
    try:
        first = _replica(tmp_path, "r1", resetting.address)
        second = _replica(tmp_path, "r2", resetting.address)
        policy = RetryPolicy(attempts=2, on=("connect-failure", "refused-stream", "5xx", "reset"))
        caller = _caller(tmp_path, (first.inbound_address, second.inbound_address), policy)
        procs += [first, second, caller]
        answers = _post(caller, 4)
        assert all(status == 503 and "UC" in flags and "URX" not in flags for status, flags in answers), answers
        assert resetting.seen == 4
    finally:
        resetting.close()


def test_post_reset_by_the_app_is_retried_when_the_policy_says_so(
    tmp_path: Path, procs: list[App | Sidecar]
) -> None:
    resetting = ResettingApp()
    try:
        first = _replica(tmp_path, "r1", resetting.address)
        second = _replica(tmp_path, "r2", resetting.address)
        policy = RetryPolicy(attempts=2, on=("5xx",), non_idempotent=True)
        caller = _caller(tmp_path, (first.inbound_address, second.inbound_address), policy)
        procs += [first, second, caller]
        answers = _post(caller, 2)
        assert all(status == 503 and "URX" in flags for status, flags in answers), answers
        assert resetting.seen == 6  # 1 + 2 retries each
    finally:
        resetting.close()
