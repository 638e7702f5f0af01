"""Longer raw-HTTP fuzz runs than CI's, against each listener of real sidecars.

Usage: .venv/bin/python -m bench.reliability.http_fuzz [SECONDS]   (default 300)

Starts an app behind an inbound sidecar (strict mTLS), a calling sidecar (outbound listener)
and a gateway, then sends fuzzed raw requests in turn to the outbound listener, the inbound
listener (over TLS with a mesh client certificate) and the gateway, until SECONDS have passed:
hypothesis-generated requests (method, path bytes, header names and values from U+0000-U+02FF,
body) and byte mutations of the malformed-HTTP corpus (tests/reliability/malformed_http.py).
Counts answers by status, every 5xx that is not a flagged sidecar answer (no
x-mesh-response-flags), requests held past 5 s (a plain request ends with a half-close; one over
TLS with unfinished headers is left to the request-header timeout), and tracebacks in the sidecars' logs. Exit 1
when any traceback, any 500 or any held request is found.
"""

from __future__ import annotations

import argparse
import random
import re
import socket
import ssl
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshctl.contract import CompiledGateway, CompiledGatewayRule, RuntimeBindings, TlsFiles
from meshctl.identity import MeshCA, dns_name, write_sidecar_certs
from tests.reliability.malformed_http import CASES
from tests.support.configs import TRUST_DOMAIN, destination, gateway_config, identity, service_config
from tests.support.procs import bindings_for, start_app, start_sidecar

HELD_S = 5.0
_header_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=40)


class Mesh:
    def __init__(self, root: Path) -> None:
        ca = MeshCA.load_or_create(root / "ca", TRUST_DOMAIN)
        tls = {name: write_sidecar_certs(ca, identity(*name.split("/")[::-1]), root / "tls" / name.replace("/", "-"))
               for name in ("orders", "checkout", "gateway/public")}
        self.client_tls: TlsFiles = tls["checkout"]
        self.app = start_app("orders-v1")

        def with_tls(b: RuntimeBindings, files: TlsFiles) -> RuntimeBindings:
            return b.model_copy(update={"tls": files})

        self.inbound = start_sidecar(root / "inbound", service_config("orders", mtls="strict"),
                                     with_tls(bindings_for(outbound=False, app=self.app.address), tls["orders"]))
        endpoints = {"orders": {"v1": (self.inbound.inbound_address,)}}
        self.outbound = start_sidecar(
            root / "outbound", service_config("checkout", (destination("orders"),), mtls="strict", inbound=None),
            with_tls(bindings_for(inbound=False, endpoints=endpoints), tls["checkout"]))
        gateway = CompiledGateway(name="public", port=0, rules=(CompiledGatewayRule(name="all", service="orders"),))
        self.gateway = start_sidecar(
            root / "gateway",
            gateway_config("public", gateway, (destination("orders"),)).model_copy(update={"mtls": "strict"}),
            with_tls(bindings_for(inbound=False, version=None, endpoints=endpoints), tls["gateway/public"]))
        self.sidecars = {"outbound": self.outbound, "inbound": self.inbound, "gateway": self.gateway}
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.tls.load_verify_locations(self.client_tls.ca_file)
        self.tls.load_cert_chain(self.client_tls.cert_file, self.client_tls.key_file)

    def address(self, role: str) -> tuple[str, int]:
        listeners = self.sidecars[role].bindings.listeners
        port = listeners.inbound if role == "inbound" else listeners.outbound
        assert port
        return "127.0.0.1", port

    def send(self, role: str, payload: bytes) -> tuple[bytes, float]:
        start = time.monotonic()
        raw = socket.create_connection(self.address(role), timeout=HELD_S)
        sock: socket.socket = raw
        chunks: list[bytes] = []
        try:
            if role == "inbound":
                sock = self.tls.wrap_socket(raw, server_hostname=dns_name(identity("orders")))
            sock.sendall(payload)
            if role != "inbound":
                sock.shutdown(socket.SHUT_WR)  # the request ends here, finished or not
            while time.monotonic() - start < HELD_S and (chunk := sock.recv(65536)):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    break
        except (OSError, ssl.SSLError):
            pass  # closed or reset by the sidecar: an answer too
        finally:
            sock.close()
        return b"".join(chunks), time.monotonic() - start

    def stop(self) -> None:
        for sc in self.sidecars.values():
            sc.proc.kill()
        self.app.stop()


def _target(role: str, path: bytes) -> bytes:
    return (b"http://orders/" if role == "outbound" else b"/") + path.replace(b" ", b"%20")


def _mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        what = rng.random()
        i = rng.randrange(len(out) + 1)
        if what < 0.4 and out:
            out[min(i, len(out) - 1)] = rng.randrange(256)
        elif what < 0.7:
            out[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif out:
            del out[i:i + rng.randint(1, 4)]
    return bytes(out)


class Tally:
    def __init__(self) -> None:
        self.sent = 0
        self.statuses: Counter[str] = Counter()
        self.unflagged_5xx: list[bytes] = []
        self.held: list[bytes] = []

    def record(self, role: str, payload: bytes, answer: bytes, seconds: float) -> None:
        self.sent += 1
        m = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
        status = int(m.group(1)) if m else None
        self.statuses[f"{role} {status or 'closed'}"] += 1
        # Unfinished headers over TLS (no half-close there) wait for the header timeout: expected.
        if seconds >= HELD_S and (role != "inbound" or b"\r\n\r\n" in payload):
            self.held.append(payload[:200])
        if status is not None and status >= 500 and b"x-mesh-response-flags" not in answer.lower():
            self.unflagged_5xx.append(answer[:200])


def main(seconds: float) -> int:
    root = Path(tempfile.mkdtemp(prefix="meshctl-http-fuzz-"))
    mesh = Mesh(root)
    tally = Tally()
    rng = random.Random()
    roles = ("outbound", "inbound", "gateway")
    deadline = time.monotonic() + seconds

    @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(method=st.sampled_from([b"GET", b"POST", b"PUT", b"BREW", b"\x00", b"G ET"]),
           path=st.binary(max_size=60), name=_header_text, value=_header_text,
           body=st.binary(max_size=100), role=st.sampled_from(roles))
    def generated(method: bytes, path: bytes, name: str, value: str, body: bytes, role: str) -> None:
        payload = (method + b" " + _target(role, path) + b" HTTP/1.1\r\nHost: orders\r\n"
                   + name.encode("utf-8", "surrogatepass") + b": " + value.encode("utf-8", "surrogatepass")
                   + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        tally.record(role, payload, *mesh.send(role, payload))

    corpus = list(CASES.values())
    try:
        while time.monotonic() < deadline:
            generated()  # a batch of 30 with fresh randomness
            for _ in range(30):  # and 30 corpus mutations
                role = rng.choice(roles)
                payload = _mutate(rng.choice(corpus).replace(b"{target}", _target(role, b"x")), rng)
                tally.record(role, payload, *mesh.send(role, payload))
        tracebacks = {role: sc.stderr().count("Traceback") for role, sc in mesh.sidecars.items()}
    finally:
        mesh.stop()
    fives = sum(n for key, n in tally.statuses.items() if key.endswith(" 500"))
    print(f"{tally.sent} raw requests in {seconds:.0f} s to outbound, inbound (mTLS) and gateway")
    for key, n in sorted(tally.statuses.items()):
        print(f"  {key}: {n}")
    print(f"tracebacks in sidecar logs: {tracebacks}; 500s: {fives}; unflagged 5xx: "
          f"{len(tally.unflagged_5xx)}; held past {HELD_S:.0f} s: {len(tally.held)}")
    for sample in (tally.unflagged_5xx + tally.held)[:5]:
        print("  e.g.", sample)
    return 1 if any(tracebacks.values()) or fives or tally.held else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Raw-HTTP fuzz of real sidecars' listeners.")
    parser.add_argument("seconds", nargs="?", type=float, default=300.0, help="how long (default 300)")
    sys.exit(main(parser.parse_args().seconds))
