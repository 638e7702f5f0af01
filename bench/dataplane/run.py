"""Data-plane benchmark: what a request costs through the meshctl sidecar, against baselines.

    .venv/bin/python -m bench.dataplane.run [--duration 10] [--connections 16] [--rounds 5]

One run measures, with wrk (keep-alive, small responses), the same static app reached:
  direct          wrk -> app
  haproxy         wrk -> HAProxy -> app
  mitmdump        wrk -> stock `mitmdump --mode reverse` (pass-through, no addon) -> app
  sidecar 1 hop   wrk -> sidecar outbound (explicit proxy, http://reviews/) -> app
  sidecar 2 hops  wrk -> sidecar outbound -> inbound sidecars (v1, v2) -> app
The sidecars run a realistic policy: three rules (header and path matches before a 90/10
default split), retries, a timeout, metrics and the JSON access log on (to a file).
The app is an HAProxy `http-request return` responder, so it is never the bottleneck.

Reported per path: req/s at N connections, p50/p99 latency, CPU ms per request of the proxy
processes (utime+stime from /proc), p50 at one connection (the per-hop latency added), and
for sidecars RSS idle and peak under load. Results also go to bench/results/dataplane.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from meshctl.contract import (
    CompiledBackend,
    CompiledBackoff,
    CompiledRouteRule,
    CompiledStringMatch,
    RequestMatch,
    RetryPolicy,
)
from tests.support.configs import destination, service_config
from tests.support.procs import REPO, Sidecar, bindings_for, free_port, start_sidecar, wait_port

CLK_TCK = os.sysconf("SC_CLK_TCK")
RESULTS = REPO / "bench" / "results" / "dataplane.json"


@dataclass
class Measurement:
    name: str
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    cpu_ms_per_req: float | None = None
    p50_1conn_ms: float = 0.0
    added_p50_ms: float | None = None  # median over rounds of (this path - direct), 1 conn
    vs_mitmdump: float | None = None  # median over rounds of req/s ratio, measured alternately
    rss_idle_mb: float | None = None
    rss_load_mb: float | None = None
    notes: list[str] = field(default_factory=list)


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        return float("nan")
    # Rounded to wrk's own precision (two decimals of its unit): 205.00us is 0.205 ms, not
    # 0.20500000000000002.
    return round(float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)], 5)


def wrk(url: str, connections: int, duration: float, script: Path | None) -> dict[str, float]:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration:.0f}s", "--latency", "--timeout", "5s"]
    if script is not None:
        args += ["-s", str(script)]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # The latency distribution rows ("     50%  412.00us"), not "...85.50%" elsewhere.
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in m.groups())
    return {"rps": rps, "p50": p50, "p99": p99, "errors": errors, "total": total}


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (after the comm field)
    return total / CLK_TCK


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def proxy_script(tmp: Path) -> Path:
    """wrk sends absolute-form requests, as an app using HTTP_PROXY does."""
    path = tmp / "proxy.lua"
    path.write_text(
        'local req = wrk.format("GET", "http://reviews/products/1", {["Host"] = "reviews"})\n'
        "request = function() return req end\n"
    )
    return path


def haproxy(tmp: Path, name: str, body: str) -> subprocess.Popen[bytes]:
    cfg = tmp / f"{name}.cfg"
    cfg.write_text(
        "global\n  maxconn 4000\n  nbthread 1\n"
        "defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n"
        "  timeout server 30s\n  option http-keep-alive\n" + body
    )
    return subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


OK_APP = '  http-request return status 200 content-type text/plain string "ok"\n'
# An OTLP/HTTP collector that accepts and drops every export (the spans' destination).
SPAN_SINK = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def stock_mitmdump(tmp: Path, app: int, port: int) -> subprocess.Popen[bytes]:
    """`mitmdump --mode reverse` with no addon, the pass-through baseline."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "mitmdump"), "-q", "--mode",
         f"reverse:http://127.0.0.1:{app}@127.0.0.1:{port}", "--set", f"confdir={tmp / 'mitmdump'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def app_mitmdump_sink(tmp: Path, procs: list[subprocess.Popen[bytes]]) -> tuple[int, int, int]:
    """The static app, stock mitmdump in front of it and a span sink, started (added to
    `procs`) and listening: their ports."""
    app, mitm, sink = free_port(), free_port(), free_port()
    procs.append(haproxy(tmp, "app", f"frontend app\n  bind 127.0.0.1:{app}\n" + OK_APP))
    procs.append(stock_mitmdump(tmp, app, mitm))
    procs.append(subprocess.Popen([sys.executable, "-c", SPAN_SINK, str(sink)]))
    for port in (app, mitm, sink):
        wait_port(port, timeout=30)
    return app, mitm, sink


def realistic_config(name: str):  # type: ignore[no-untyped-def]
    """Header and path rules before a 90/10 split with retries: what a real route looks like."""
    def to(version: str) -> tuple[CompiledBackend, ...]:
        return (CompiledBackend(service="reviews", version=version, weight=100),)

    rules = (
        CompiledRouteRule(name="beta-testers", backends=to("v2"),
                  matches=(RequestMatch(headers={"end-user": CompiledStringMatch(exact="jason")}),)),
        CompiledRouteRule(name="admin-writes", backends=to("v1"),
                  matches=(RequestMatch(path=CompiledStringMatch(prefix="/admin"),
                                        methods=("POST", "PUT")),)),
        CompiledRouteRule(name="default", timeout_ms=5000,
                  backends=(CompiledBackend(service="reviews", version="v1", weight=90),
                            CompiledBackend(service="reviews", version="v2", weight=10)),
                  retries=RetryPolicy(attempts=2, on=("5xx", "connect-failure"),
                                      backoff=CompiledBackoff(base_ms=25, max_ms=250))),
    )
    return service_config(name, (destination("reviews", ("v1", "v2"), rules),))


def measure(
    m: Measurement, url: str, pids: list[int], args: argparse.Namespace, script: Path | None,
    sidecar_pids: list[int] = (),  # type: ignore[assignment]
) -> Measurement:
    wrk(url, 4, 1, script)  # warm up: connections, caches, pyc
    if sidecar_pids:
        m.rss_idle_mb = round(max(rss_mb(p) for p in sidecar_pids), 1)
    cpu0 = cpu_seconds(pids) if pids else 0.0
    r = wrk(url, args.connections, args.duration, script)
    if pids:
        m.cpu_ms_per_req = round((cpu_seconds(pids) - cpu0) * 1000 / max(r["total"], 1), 3)
    if sidecar_pids:
        m.rss_load_mb = round(max(rss_mb(p, "VmHWM") for p in sidecar_pids), 1)
    m.rps, m.p50_ms, m.p99_ms, m.errors = round(r["rps"]), r["p50"], r["p99"], int(r["errors"])
    m.p50_1conn_ms = wrk(url, 1, max(args.duration / 2, 3), script)["p50"]
    print(f"  {m.name}: {m.rps} req/s, p50 {m.p50_ms} ms, p99 {m.p99_ms} ms, "
          f"1-conn p50 {m.p50_1conn_ms} ms, cpu {m.cpu_ms_per_req} ms/req, "
          f"errors {m.errors}", file=sys.stderr)
    return m


def added_latency(
    m: Measurement, url: str, direct_url: str, args: argparse.Namespace, script: Path
) -> None:
    """Latency added at one connection: direct and this path measured in alternation, so the
    slowly changing background load of a shared machine hits both alike; median of rounds."""
    diffs = []
    for _ in range(args.rounds):
        direct = wrk(direct_url, 1, 3, None)["p50"]
        diffs.append(wrk(url, 1, 3, script)["p50"] - direct)
    m.added_p50_ms = round(statistics.median(diffs), 3)
    print(f"  {m.name}: added p50 per round {[round(d, 3) for d in diffs]}", file=sys.stderr)


def run(args: argparse.Namespace) -> list[Measurement]:
    tmp = Path(tempfile.mkdtemp(prefix="meshctl-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    sidecars: list[Sidecar] = []
    results: list[Measurement] = []
    try:
        app1, app2, hap = free_port(), free_port(), free_port()
        procs.append(haproxy(tmp, "app", (
            f"frontend app\n  bind 127.0.0.1:{app1}\n  bind 127.0.0.1:{app2}\n" + OK_APP)))
        procs.append(haproxy(tmp, "proxy", (
            f"frontend proxy\n  bind 127.0.0.1:{hap}\n  default_backend app\n"
            f"backend app\n  server s1 127.0.0.1:{app1}\n")))
        mitm = free_port()
        procs.append(stock_mitmdump(tmp, app1, mitm))
        for port in (app1, hap, mitm):
            wait_port(port, timeout=30)
        script = proxy_script(tmp)
        print("measuring (each path: warm-up, load, one connection)", file=sys.stderr)
        results.append(measure(Measurement("direct to app"), f"http://127.0.0.1:{app1}/", [],
                               args, None))
        results.append(measure(Measurement("HAProxy"), f"http://127.0.0.1:{hap}/",
                               [procs[1].pid], args, None))
        results.append(measure(Measurement("mitmdump pass-through"), f"http://127.0.0.1:{mitm}/",
                               [procs[2].pid], args, None))

        one = start_sidecar(tmp / "one", realistic_config("productpage"), bindings_for(
            inbound=False, endpoints={"reviews": {"v1": (f"127.0.0.1:{app1}",),
                                                  "v2": (f"127.0.0.1:{app2}",)}}))
        sidecars.append(one)
        results.append(measure(Measurement("meshctl sidecar, 1 hop"), one.outbound_proxy + "/",
                               [one.proc.pid], args, script, [one.proc.pid]))
        added_latency(results[-1], one.outbound_proxy + "/", f"http://127.0.0.1:{app1}/",
                      args, script)
        ratios = []
        for _ in range(args.rounds):  # alternating, so background load hits both alike
            stock = wrk(f"http://127.0.0.1:{mitm}/", args.connections, 4, None)["rps"]
            ours = wrk(one.outbound_proxy + "/", args.connections, 4, script)["rps"]
            ratios.append(ours / max(stock, 1.0))
        results[-1].vs_mitmdump = round(statistics.median(ratios), 2)
        print(f"  sidecar / mitmdump req/s per round {[round(r, 2) for r in ratios]}",
              file=sys.stderr)
        procs[2].terminate()
        one.stop()

        inbound = [
            start_sidecar(tmp / f"in-{v}", service_config("reviews"), bindings_for(
                outbound=False, app=f"127.0.0.1:{port}", version=v))
            for v, port in (("v1", app1), ("v2", app2))
        ]
        sidecars.extend(inbound)
        two = start_sidecar(tmp / "two", realistic_config("productpage"), bindings_for(
            inbound=False, endpoints={"reviews": {"v1": (inbound[0].inbound_address,),
                                                  "v2": (inbound[1].inbound_address,)}}))
        sidecars.append(two)
        pids = [two.proc.pid] + [s.proc.pid for s in inbound]
        m = measure(Measurement("meshctl sidecars, 2 hops"), two.outbound_proxy + "/",
                    pids, args, script, [two.proc.pid])
        m.notes.append("CPU is the sum of the outbound and both inbound sidecars")
        added_latency(m, two.outbound_proxy + "/", f"http://127.0.0.1:{app1}/", args, script)
        results.append(m)
    finally:
        for sc in sidecars:
            sc.stop()
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
    return results


def table(results: list[Measurement], args: argparse.Namespace) -> str:
    lines = [
        f"| path ({args.connections} conns) | req/s | p50 ms | p99 ms | CPU ms/req "
        "| p50 ms at 1 conn | RSS idle / load MB | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in results:
        rss = f"{m.rss_idle_mb} / {m.rss_load_mb}" if m.rss_idle_mb else "-"
        cpu = m.cpu_ms_per_req if m.cpu_ms_per_req is not None else "-"
        lines.append(f"| {m.name} | {m.rps} | {m.p50_ms} | {m.p99_ms} | {cpu} "
                     f"| {m.p50_1conn_ms} | {rss} | {m.errors} |")
    by = {m.name: m for m in results}
    stock, one, two = (by["mitmdump pass-through"], by["meshctl sidecar, 1 hop"],
                       by["meshctl sidecars, 2 hops"])
    lines += [
        "",
        f"- sidecar (full policy) vs stock mitmdump pass-through: "
        f"{one.rps / max(stock.rps, 1):.2f}x in the table's runs, {one.vs_mitmdump}x as the "
        f"median of {args.rounds} alternating rounds (target >= 2x)",
        f"- added p50 per hop at one connection (median of {args.rounds} alternating rounds): "
        f"{one.added_p50_ms:.2f} ms (1 hop), {(two.added_p50_ms or 0) / 2:.2f} ms per hop "
        f"(2 hops) (target < 1 ms)",
        f"- idle RSS of a sidecar started on its own: {one.rss_idle_mb} MB; the ones `up` forks "
        "share most of it (PSS: `python -m bench.runtime.run memory`)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="latency rounds at 1 connection")
    args = parser.parse_args()
    results = run(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps([asdict(m) for m in results], indent=1) + "\n")
    print(table(results, args))


if __name__ == "__main__":
    main()
