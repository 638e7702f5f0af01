"""A change to one gateway listener (its connection limits, its port) is diffed leaf by leaf under
the listener's name, as the sidecar-wide connection limits are: not as two dumps of the list."""

from __future__ import annotations

from meshctl.contract import CompiledGateway, ConnectionLimits, GatewayListener
from meshctl.diff.engine import diff_meshes
from meshctl.diff.report import text_report
from tests.support.configs import gateway_config


def edge(idle_ms: int, https_port: int) -> CompiledGateway:
    return CompiledGateway(name="edge", port=8080, rules=(), listeners=(
        GatewayListener(name="http", port=8080, connections=ConnectionLimits(idle_timeout_ms=idle_ms)),
        GatewayListener(name="admin", port=https_port),
    ))


def test_a_listener_change_is_named_and_in_words() -> None:
    old = {"gateway/edge": gateway_config("edge", edge(300_000, 9000))}
    new = {"gateway/edge": gateway_config("edge", edge(60_000, 9001))}
    text = text_report("a", "b", diff_meshes(old, new))
    assert "listeners admin.port 9000 -> 9001, http.connections.idleTimeout 5m -> 1m" in text, text
    assert "ConnectionLimits(" not in text and "name=" not in text
