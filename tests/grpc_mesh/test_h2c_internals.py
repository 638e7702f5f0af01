"""The mitmproxy internals h2c relies on, and the pure gRPC wire rules (fast, no processes)."""

from __future__ import annotations

import pytest
from mitmproxy.version import VERSION

from proxy_addon import grpcwire, h2c


def test_the_mitmproxy_functions_h2c_relies_on_are_unchanged() -> None:
    """Fails when mitmproxy changes code proxy_addon/h2c.py builds on: re-read each function
    named here (client/server protocol choice by alpn, connection reuse, NextLayer), check the
    two switches still hold, then record the new fingerprints in h2c.FINGERPRINTS."""
    assert VERSION.startswith(h2c.SUPPORTED_MAJOR)
    assert h2c.changed_internals() == [], f"mitmproxy {VERSION} changed: {h2c.changed_internals()}"


def test_the_sidecar_uses_the_h2c_next_layer_under_mitmproxys_name() -> None:
    layer = h2c.MeshNextLayer(lambda context: True)
    assert layer.name == "nextlayer"  # proxyserver warns (and skips it) under any other name


@pytest.mark.parametrize(("value", "seconds"), [
    ("1S", 1.0), ("250m", 0.25), ("3M", 180.0), ("1H", 3600.0), ("100u", 1e-4), ("5n", 5e-9),
    ("99999999m", 99999.999), ("", None), ("1s", None), ("123456789m", None), ("-1S", None), (None, None),
])
def test_grpc_timeout_parsing(value: str | None, seconds: float | None) -> None:
    assert grpcwire.parse_timeout(value) == (pytest.approx(seconds) if seconds is not None else None)


def test_grpc_timeout_formatting_rounds_up_and_stays_in_8_digits() -> None:
    assert grpcwire.format_timeout(0.0001) == "1m"
    assert grpcwire.format_timeout(0.2504) == "251m"
    assert grpcwire.format_timeout(10**6) == "1000000S"
    assert grpcwire.parse_timeout(grpcwire.format_timeout(1.5)) == 1.5


def test_the_route_timeout_caps_the_callers_deadline() -> None:
    assert grpcwire.deadline_s(1000, "5S") == 1.0
    assert grpcwire.deadline_s(1000, "200m") == 0.2
    assert grpcwire.deadline_s(None, "200m") == 0.2
    assert grpcwire.deadline_s(1000, None) == 1.0
    assert grpcwire.deadline_s(None, "junk") is None


def test_retry_conditions_are_istios() -> None:
    on = ("unavailable", "resource-exhausted", "5xx")
    assert grpcwire.retriable(on, grpcwire.UNAVAILABLE)
    assert grpcwire.retriable(on, grpcwire.RESOURCE_EXHAUSTED)
    assert not grpcwire.retriable(on, grpcwire.INTERNAL)
    assert not grpcwire.retriable(on, 3)  # INVALID_ARGUMENT is never a condition
    assert not grpcwire.retriable(on, grpcwire.OK)


def test_sidecar_answers_map_to_grpc_statuses() -> None:
    assert grpcwire.status_for_http(403, ["RBAC"]) == grpcwire.PERMISSION_DENIED
    assert grpcwire.status_for_http(404, ["NR"]) == grpcwire.UNIMPLEMENTED
    assert grpcwire.status_for_http(503, ["UO"]) == grpcwire.UNAVAILABLE
    assert grpcwire.status_for_http(429, ["RL"]) == grpcwire.UNAVAILABLE
    assert grpcwire.status_for_http(504, ["UT"]) == grpcwire.DEADLINE_EXCEEDED
    assert grpcwire.status_for_http(503, ["DI", "UT"]) == grpcwire.DEADLINE_EXCEEDED


def test_grpc_content_types() -> None:
    from meshctl.decision.decide import is_grpc_content_type

    assert is_grpc_content_type("application/grpc")
    assert is_grpc_content_type("application/grpc+proto")
    assert is_grpc_content_type("Application/GRPC;charset=utf-8")
    assert not is_grpc_content_type("application/grpc-web")
    assert not is_grpc_content_type("application/json")
    assert not is_grpc_content_type(None)


def test_grpc_message_is_percent_encoded() -> None:
    encoded = grpcwire.encode_message("no route: 100% ünicode\n")
    assert encoded.isascii() and "\n" not in encoded
    assert grpcwire.decode_message(encoded) == "no route: 100% ünicode\n"


def test_refused_streams_are_told_apart_from_other_resets() -> None:
    assert h2c.refused("stream reset by client (REFUSED_STREAM)")  # mitmproxy's RST_STREAM text
    assert h2c.refused(h2c.REFUSED_MESSAGE)  # above a GOAWAY's last stream
    assert not h2c.refused("stream reset by client (INTERNAL_ERROR)")
    assert not h2c.refused("HTTP/2 connection closed: <ConnectionTerminated error_code:0, last_stream_id:7>")


def test_calls_that_never_reached_an_app() -> None:
    from meshctl.contract import RetryPolicy
    from meshctl.decision import unreached_retries
    from proxy_addon import grpcflow

    def call_retries(policy: RetryPolicy) -> int:
        return unreached_retries(policy, "POST", 0, grpc=True)

    default = RetryPolicy(attempts=2, on=("connect-failure", "refused-stream"))
    assert call_retries(default) == 2
    assert call_retries(RetryPolicy(attempts=3, on=("unavailable",))) == 3
    assert unreached_retries(RetryPolicy(attempts=3, on=("unavailable",)), "POST", 0) == 0  # HTTP: no
    assert call_retries(RetryPolicy(attempts=3, on=("internal",))) == 0
    assert call_retries(RetryPolicy()) == 0
    assert grpcflow.never_reached(grpcwire.UNAVAILABLE, "UF")
    assert grpcflow.never_reached(grpcwire.UNAVAILABLE, "DI,UH")
    assert not grpcflow.never_reached(grpcwire.UNAVAILABLE, None)  # the app's own UNAVAILABLE
    assert not grpcflow.never_reached(grpcwire.UNAVAILABLE, "UO")
    assert not grpcflow.never_reached(grpcwire.INTERNAL, "UF")


def test_https_gateway_listeners_speak_h2_to_clients_that_offer_only_h2() -> None:
    from OpenSSL import SSL

    from proxy_addon.gateway_tls import select_alpn

    conn = SSL.Connection(SSL.Context(SSL.TLS_SERVER_METHOD))
    assert select_alpn(conn, [b"h2"]) == b"h2"  # grpcio
    assert select_alpn(conn, [b"h2", b"http/1.1"]) == b"http/1.1"  # browsers, curl
    assert select_alpn(conn, [b"spdy/3"]) is SSL.NO_OVERLAPPING_PROTOCOLS


def test_warm_installs_the_stream_recovery_once_for_every_forked_sidecar() -> None:
    """The fingerprint check reads ten functions' source (~20 ms): the fork server pays it in
    `warm`, and a sidecar forked from it finds the wrappers installed."""
    import subprocess
    import sys

    probe = ("from proxy_addon.__main__ import warm; warm()\n"
             "from proxy_addon import h2c\n"
             "from mitmproxy.proxy.layers.http import HttpStream\n"
             "print(h2c.installed, HttpStream.handle_protocol_error is h2c._protocol_error)\n")
    proc = subprocess.run([sys.executable, "-OO", "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True"]
