"""Answers mitmproxy would make itself (streamed request to a dead upstream, malformed HTTP)
come out as the sidecar's flagged JSON: no internal address, no proxy banner."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.support.configs import destination, service_config
from tests.support.procs import Sidecar, bindings_for, free_port, start_sidecar


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    dead = f"127.0.0.1:{free_port()}"  # nothing listens here
    bindings = bindings_for(inbound=False, endpoints={"reviews": {"v1": (dead,)}})
    config = service_config("productpage", (destination("reviews"),), revision="errors")
    sc = start_sidecar(Path(tmp_path_factory.mktemp("errors")), config, bindings)
    yield sc
    sc.stop()


def raw_exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(payload)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def test_streamed_request_to_a_dead_upstream_gets_a_flagged_answer(sidecar: Sidecar) -> None:
    port = sidecar.bindings.listeners.outbound
    assert port is not None
    request = (b"GET http://reviews/events HTTP/1.1\r\nHost: reviews\r\n"
               b"Accept: text/event-stream\r\nConnection: close\r\n\r\n")  # streams natively
    status, headers, body = split_response(raw_exchange(port, request))
    assert status == 502
    assert headers["x-mesh-response-flags"] == "UF"
    assert json.loads(body)["flags"] == "UF"
    assert b"127.0.0.1" not in body and "mitmproxy" not in headers.get("server", "").lower()


def test_malformed_request_gets_400_dpe_without_echoing_internals(sidecar: Sidecar) -> None:
    port = sidecar.bindings.listeners.outbound
    assert port is not None
    status, headers, body = split_response(
        raw_exchange(port, b"GET http://reviews/ HTTP/1.1\r\nBad Header Without Colon\r\n\r\n"))
    assert status == 400
    assert headers["x-mesh-response-flags"] == "DPE"
    assert json.loads(body) == {"error": "malformed request", "flags": "DPE"}
