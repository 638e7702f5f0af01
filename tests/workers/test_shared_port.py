"""Gateway workers share one listen port (SO_REUSEPORT); a lone sidecar keeps its port to itself.

Real sidecar processes on 127.0.0.1: two gateway workers bound to the same port both accept
connections (each counts requests on its own admin port); without `shared` a second process on
that port fails to start, as it must.
"""

from __future__ import annotations

import http.client
from pathlib import Path

from meshctl.contract import (
    CompiledDirectResponse,
    CompiledGateway,
    CompiledGatewayRule,
    Listeners,
    RuntimeBindings,
    SidecarConfig,
)
from tests.support.configs import gateway_config
from tests.support.procs import free_port, requests_served, start_sidecar


def _config(port: int) -> SidecarConfig:
    rule = CompiledGatewayRule(name="hello", respond=CompiledDirectResponse(status=200, body="hi"))
    return gateway_config("edge", CompiledGateway(name="edge", port=port, rules=(rule,)))


def _bindings(port: int, worker: int | None, shared: bool) -> RuntimeBindings:
    return RuntimeBindings(
        instance=f"gateway-edge.w{worker}",
        listeners=Listeners(outbound=port, admin=free_port(), shared=shared, worker=worker),
    )


def test_two_workers_accept_on_one_port(tmp_path: Path) -> None:
    port = free_port()
    config = _config(port)
    workers = [
        start_sidecar(tmp_path / f"w{i}", config, _bindings(port, i, True), wait=False)
        for i in range(2)
    ]
    try:
        for w in workers:
            w.wait_ready()
        # A new connection per request: the kernel hashes each one to a worker.
        for _ in range(60):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/")
            response = conn.getresponse()
            assert response.status == 200 and response.read() == b"hi"
            conn.close()
        served = [requests_served(w.metrics()) for w in workers]
        assert sum(served) == 60, served
        assert all(n > 0 for n in served), f"a worker got no connection: {served}"
        assert workers[0].proc.pid != workers[1].proc.pid
    finally:
        for w in workers:
            w.stop()


def test_a_lone_sidecar_does_not_share_its_port(tmp_path: Path) -> None:
    port = free_port()
    config = _config(port)
    first = start_sidecar(tmp_path / "a", config, _bindings(port, None, False))
    try:
        # Even a process that asks to share cannot join a port bound without SO_REUSEPORT.
        second = start_sidecar(tmp_path / "b", config, _bindings(port, 1, True), wait=False)
        assert second.proc.wait(timeout=60) == 2
        assert "address already in use" in second.stderr().lower()
    finally:
        first.stop()
