"""The cost of mutual TLS on the two-hop path: client -> sidecar A -> (mTLS) -> sidecar B -> app.

    .venv/bin/python -m bench.mtls.run [--duration 10] [--rounds 2] [--connections 16]

wrk drives sidecar A's outbound listener (an explicit proxy: absolute-form requests for
http://reviews/) over keep-alive connections; A calls B's inbound listener through its pooled
client, which reuses connections; B forwards to a plain app. The same processes run each
round with `mtls: disabled` and `mtls: strict` (hot reload), alternating, so background load
on a shared machine hits both alike; the table shows the median per mode. Results also go to
bench/results/mtls.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meshctl.contract import Inbound, TlsFiles
from meshctl.identity import MeshCA, dns_name, write_sidecar_certs
from tests.support.configs import TRUST_DOMAIN, destination, identity, service_config
from tests.support.procs import REPO, bindings_for, start_app, start_sidecar

LUA = """
wrk.method = "GET"
wrk.path = "http://reviews/bench"
wrk.headers["Host"] = "reviews"
"""


def parse_wrk(text: str) -> dict[str, float]:
    def ms(value: str) -> float:
        found = re.match(r"([\d.]+)(us|ms|s|m)$", value)
        if found is None:  # wrk prints -nan when nothing completed
            return float("nan")
        number, unit = found.groups()
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    p50 = ms(re.search(r"50%\s+(\S+)", text).group(1))  # type: ignore[union-attr]
    p99 = ms(re.search(r"99%\s+(\S+)", text).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket_errors = re.search(r"Socket errors: (.*)", text)
    return {
        "rps": rps, "p50_ms": p50, "p99_ms": p99,
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": 1.0 if socket_errors else 0.0,
    }


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU time of the processes, from /proc (Linux)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def wrk(
    proxy_port: int, script: Path, duration: int, connections: int, pids: list[int]
) -> dict[str, float]:
    cpu_before = cpu_seconds(pids)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{proxy_port}"],
        check=True, capture_output=True, text=True,
    ).stdout
    result = parse_wrk(out)
    requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    # CPU per request is what a busy shared machine disturbs least: req/s depends on
    # what else runs, the proxies' CPU time per request much less.
    result["cpu_ms_per_request"] = (cpu_seconds(pids) - cpu_before) * 1000 / max(requests, 1)
    return result


def new_connection_cost(address: str, files: TlsFiles | None, pid: int, n: int) -> float:
    """Server sidecar CPU ms per request when every request opens a new connection."""
    ctx = None
    if files is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(files.ca_file)
        ctx.load_cert_chain(files.cert_file, files.key_file)
    host, _, port = address.rpartition(":")
    before = cpu_seconds([pid])
    for _ in range(n):
        raw = socket.create_connection((host, int(port)), timeout=10)
        sock = ctx.wrap_socket(raw, server_hostname=dns_name(identity("reviews"))) if ctx else raw
        with sock:
            sock.sendall(b"GET /bench HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n")
            while sock.recv(65536):
                pass
    return (cpu_seconds([pid]) - before) * 1000 / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--new-connections", type=int, default=300)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed", file=sys.stderr)
        return 2

    root = Path(tempfile.mkdtemp(prefix="meshctl-bench-mtls-"))
    script = root / "proxy.lua"
    script.write_text(LUA)
    ca = MeshCA.load_or_create(root / "ca", TRUST_DOMAIN)
    tls = {n: write_sidecar_certs(ca, identity(n), root / n / "tls")
           for n in ("reviews", "productpage")}
    app = start_app("reviews", plain=True)
    sidecars = []
    try:
        def server_config(mtls: str, rev: str):  # type: ignore[no-untyped-def]
            return service_config("reviews", revision=rev, mtls=mtls,
                                  inbound=Inbound(service="reviews"),
                                  telemetry={"access_log": "off", "tracing_sampling": 0.0})

        def client_config(mtls: str, rev: str):  # type: ignore[no-untyped-def]
            return service_config("productpage", (destination("reviews"),), revision=rev,
                                  mtls=mtls, inbound=None,
                                  telemetry={"access_log": "off", "tracing_sampling": 0.0})

        server = start_sidecar(
            root / "server", server_config("disabled", "r0"),
            bindings_for(outbound=False, app=app.address).model_copy(
                update={"tls": tls["reviews"]}),
        )
        sidecars.append(server)
        client = start_sidecar(
            root / "client", client_config("disabled", "r0"),
            bindings_for(inbound=False,
                         endpoints={"reviews": {"v1": (server.inbound_address,)}}).model_copy(
                update={"tls": tls["productpage"]}),
        )
        sidecars.append(client)
        port = client.bindings.listeners.outbound
        assert port is not None
        results: dict[str, list[dict[str, float]]] = {"disabled": [], "strict": []}
        revision = 0
        for round_no in range(args.rounds):
            for mode in ("disabled", "strict"):
                revision += 1
                # server first on the way to strict, client first on the way back
                order = (server, client) if mode == "strict" else (client, server)
                for sc in order:
                    make = server_config if sc is server else client_config
                    sc.reload(make(mode, f"r{revision}"))
                pids = [server.proc.pid, client.proc.pid]
                wrk(port, script, 2, args.connections, pids)  # warm-up: pools, handshakes
                result = wrk(port, script, args.duration, args.connections, pids)
                results[mode].append(result)
                print(f"round {round_no + 1} {mode:8s} {result['rps']:8.0f} req/s "
                      f"p50 {result['p50_ms']:.1f} ms p99 {result['p99_ms']:.1f} ms "
                      f"cpu {result['cpu_ms_per_request']:.2f} ms/req "
                      f"non-2xx {result['non_2xx']:.0f}", file=sys.stderr)
        handshake: dict[str, float] = {}
        for mode in ("disabled", "strict"):
            server.reload(server_config(mode, f"h-{mode}"))
            files = tls["productpage"] if mode == "strict" else None
            handshake[mode] = new_connection_cost(
                server.inbound_address, files, server.proc.pid, args.new_connections
            )
        summary = {
            mode: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            for mode, runs in results.items()
        }
        # Each round runs both modes back to back: compare within a round, then take the
        # median over rounds, so drifting background load cancels out.
        pairs = list(zip(results["disabled"], results["strict"], strict=True))
        cost = statistics.median(1 - s["rps"] / d["rps"] for d, s in pairs)
        cpu_cost = statistics.median(
            1 - d["cpu_ms_per_request"] / s["cpu_ms_per_request"] for d, s in pairs
        )
        report = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "duration_s": args.duration, "connections": args.connections,
            "rounds": results, "median": summary, "throughput_cost": round(cost, 4),
            "cpu_derived_throughput_cost": round(cpu_cost, 4),
            "server_cpu_ms_per_new_connection": handshake,
        }
        out = REPO / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / "mtls.json").write_text(json.dumps(report, indent=1) + "\n")
        print("| mode | req/s | p50 ms | p99 ms | sidecar CPU ms/request |")
        print("|---|---|---|---|---|")
        for mode, s in summary.items():
            print(f"| {mode} | {s['rps']:.0f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} "
                  f"| {s['cpu_ms_per_request']:.2f} |")
        print(f"\nmTLS throughput cost (median of per-round pairs): {cost * 100:.1f}% in "
              f"measured req/s, {cpu_cost * 100:.1f}% from sidecar CPU per request")
        print(f"server sidecar CPU per request on a new connection: plain "
              f"{handshake['disabled']:.2f} ms, mTLS {handshake['strict']:.2f} ms")
        return 0
    finally:
        for sc in sidecars:
            sc.stop()
        app.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
