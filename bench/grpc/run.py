"""gRPC benchmark: unary RPCs through two sidecars (mTLS between them) against baselines.

    .venv/bin/python -m bench.grpc.run [--duration 8] [--clients 4] [--streams 8] [--rounds 3]

Paths, measured in alternating rounds (each round runs every path once, so the background
load of a shared machine hits all of them alike):
  grpc direct     h2load -> inventory app (grpc.aio, cleartext HTTP/2)
  grpc 2 sidecars h2load (h2c prior knowledge) -> outbound sidecar -> HTTP/2 over mTLS ->
                  inbound sidecar -> h2c -> the same app
  http/1.1 2 sidecars  wrk (explicit proxy, keep-alive) -> outbound sidecar -> HTTP/1.1 over
                  mTLS -> inbound sidecar -> HAProxy responder: the same two sidecars' HTTP path
The RPC is `Inventory/Check` (a 5-byte request, ~20-byte answer plus trailers). h2load counts
HTTP statuses only, so a grpcio call checks each path answers with grpc-status 0 first.
Reported: RPCs (requests) per second, CPU ms per RPC of the two sidecars (utime+stime from
/proc), p50 latency. Results also go to bench/results/grpc.json.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from bench.dataplane.run import cpu_seconds, haproxy, wrk
from meshctl.contract import Inbound
from meshctl.identity import MeshCA, write_sidecar_certs
from shop.grpc_stubs import load
from tests.grpc_mesh.conftest import grpc_destination, start_grpc_app, with_tls
from tests.support.configs import TRUST_DOMAIN, destination, identity, service_config
from tests.support.procs import REPO, Sidecar, bindings_for, free_port, start_sidecar, wait_port

RESULTS = REPO / "bench" / "results" / "grpc.json"
CHECK = "/shop.inventory.v1.Inventory/Check"
pb, pb_grpc = load("inventory")


@dataclass
class Path_:
    name: str
    rps: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def summary(self) -> dict[str, float | str | int]:
        return {
            "name": self.name,
            "rps": round(statistics.median(self.rps)),
            "cpu_ms_per_rpc": round(statistics.median(self.cpu_ms), 3) if self.cpu_ms else float("nan"),
            "p50_ms": round(statistics.median(self.p50_ms), 2),
            "errors": self.errors,
            "rounds": len(self.rps),
        }


def grpc_frame(tmp: Path) -> Path:
    message = pb.StockRequest(item="1").SerializeToString()
    path = tmp / "check.bin"
    path.write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)
    return path


def h2load(url: str, data: Path, authority: str, args: argparse.Namespace) -> dict[str, float]:
    cmd = [
        "h2load", "-D", str(args.duration), "-c", str(args.clients), "-m", str(args.streams),
        "-t", "1", "-d", str(data), "-H", "content-type: application/grpc", "-H", "te: trailers",
        "-H", f":authority: {authority}", url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"finished in .*?, ([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    assert done is not None, out
    # "time for request:  min max mean sd +/- sd": h2load gives no median; the mean is reported.
    row = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    assert row is not None, out
    return {"rps": rps, "total": float(done.group(2)), "errors": float(done.group(4)),
            "p50": _ms(row.group(3))}


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    if not m:
        return float("nan")
    return round(float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)], 5)


def check_rpc(target: str, authority: str) -> None:
    channel = grpc.insecure_channel(target, options=[("grpc.default_authority", authority)])
    assert pb_grpc.InventoryStub(channel).Check(pb.StockRequest(item="1"), timeout=10).available == 12
    channel.close()


def run(args: argparse.Namespace) -> list[dict[str, float | str | int]]:
    tmp = Path(tempfile.mkdtemp(prefix="meshctl-bench-grpc-"))
    ca = MeshCA.load_or_create(tmp / "ca", TRUST_DOMAIN)
    tls = {n: write_sidecar_certs(ca, identity(n), tmp / n / "tls")
           for n in ("inventory", "catalog", "frontend")}
    app = start_grpc_app("inventory", "v1")
    http_port = free_port()
    responder = haproxy(tmp, "app", f"frontend app\n  bind 127.0.0.1:{http_port}\n"
                        "  http-request return status 200 content-type application/json "
                        'string "{\\"item\\":\\"1\\",\\"available\\":12}"\n')
    wait_port(http_port)
    started: list[Sidecar] = []
    try:
        grpc_in = start_sidecar(
            tmp / "inventory",
            service_config("inventory", mtls="strict", inbound=Inbound(service="inventory", protocol="grpc")),
            with_tls(bindings_for(outbound=False, app=app.address), tls["inventory"]))
        http_in = start_sidecar(
            tmp / "catalog", service_config("catalog", mtls="strict"),
            with_tls(bindings_for(outbound=False, app=f"127.0.0.1:{http_port}"), tls["catalog"]))
        endpoints = {"inventory": {"v1": (grpc_in.inbound_address,)},
                     "catalog": {"v1": (http_in.inbound_address,)}}
        out = start_sidecar(
            tmp / "frontend",
            service_config("frontend", (grpc_destination("inventory", ("v1",)), destination("catalog")),
                           mtls="strict", inbound=None),
            with_tls(bindings_for(inbound=False, endpoints=endpoints), tls["frontend"]))
        started += [grpc_in, http_in, out]
        outbound = f"127.0.0.1:{out.bindings.listeners.outbound}"
        check_rpc(app.address, "inventory")
        check_rpc(outbound, "inventory")
        data = grpc_frame(tmp)
        script = tmp / "proxy.lua"
        script.write_text('local req = wrk.format("GET", "http://catalog/stock/1", {["Host"] = "catalog"})\n'
                          "request = function() return req end\n")
        sidecars = [out.proc.pid, grpc_in.proc.pid]
        http_sidecars = [out.proc.pid, http_in.proc.pid]
        paths = {n: Path_(n) for n in ("grpc direct", "grpc 2 sidecars", "http/1.1 2 sidecars")}
        warm = argparse.Namespace(**{**vars(args), "duration": 2})
        h2load(f"http://{outbound}{CHECK}", data, "inventory", warm)
        wrk(f"http://{outbound}/", 4, 2, script)
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}", file=sys.stderr)
            r = h2load(f"http://{app.address}{CHECK}", data, "inventory", args)
            _add(paths["grpc direct"], r, None)
            cpu0 = cpu_seconds(sidecars)
            r = h2load(f"http://{outbound}{CHECK}", data, "inventory", args)
            _add(paths["grpc 2 sidecars"], r, (cpu_seconds(sidecars) - cpu0) * 1000 / max(r["total"], 1))
            cpu0 = cpu_seconds(http_sidecars)
            w = wrk(f"http://{outbound}/", args.clients * args.streams, args.duration, script)
            _add(paths["http/1.1 2 sidecars"], w, (cpu_seconds(http_sidecars) - cpu0) * 1000 / max(w["total"], 1))
        return [p.summary() for p in paths.values()]
    finally:
        for sc in started:
            sc.stop()
        app.stop()
        responder.kill()
        responder.wait()


def _add(path: Path_, r: dict[str, float], cpu_ms: float | None) -> None:
    path.rps.append(r["rps"])
    path.p50_ms.append(r["p50"])
    path.errors += int(r["errors"])
    if cpu_ms is not None:
        path.cpu_ms.append(cpu_ms)
    print(f"  {path.name}: {r['rps']:.0f} req/s, p50/mean {r['p50']:.2f} ms, "
          f"cpu {cpu_ms if cpu_ms is None else round(cpu_ms, 3)} ms/req, errors {int(r['errors'])}",
          file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--streams", type=int, default=4, help="concurrent streams per h2 client")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = run(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")
    print("| path | RPCs (req)/s | sidecar CPU ms per RPC | latency ms (h2load mean, wrk p50) | errors |")
    print("| --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['name']} | {r['rps']} | {r['cpu_ms_per_rpc']} | {r['p50_ms']} | {r['errors']} |")


if __name__ == "__main__":
    main()
