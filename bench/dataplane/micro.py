"""The sidecar's own per-request steps, timed in one process: microseconds per call.

    .venv/bin/python -OO bench/dataplane/micro.py [--baseline DIR] [--rounds 5]

What mitmproxy and aiohttp do per request is the same in every meshctl commit; what meshctl's
own code does per request is timed here on the compiled shop policy (`mesh.d/`): the routing
decision of an outbound, gateway and inbound request, the end of a request (`reporting.finish`:
Istio metrics, the JSON access log line, the span), the encoding of a span for export, the
caller's identity from its certificate, the TLS settings of a call to another sidecar. One
process runs one step many times back to back, so a loaded machine slows both trees alike.

With `--baseline DIR` (a work tree of an earlier commit with its own `.venv`), the same file
runs under that tree's Python too (it imports only names both trees have), the two trees
alternating per round; the table shows the median per step and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


def measure(repeat: int) -> dict[str, float]:
    """Run in the tree whose Python runs this file."""
    from mitmproxy import certs
    from mitmproxy.test import tflow

    from meshctl.contract import RuntimeBindings
    from meshctl.decision import Request, decide
    from meshctl.identity import MeshCA, write_sidecar_certs
    from meshctl.pipeline import build
    from meshctl.sources.worktree import read_worktree
    from proxy_addon import inbound, reporting, tracing
    from proxy_addon.flowinfo import FlowInfo, header_dict
    from proxy_addon.runtime import SidecarRuntime

    tmp = Path(tempfile.mkdtemp(prefix="meshctl-micro-"))
    result = build(read_worktree(Path("mesh.d")), "bench")
    assert result.compiled is not None
    configs = result.compiled.configs
    frontend, reviews, gateway = configs["frontend"], configs["reviews"], configs["gateway/public"]
    ca = MeshCA.load_or_create(tmp / "ca", "shop.local")
    files = write_sidecar_certs(ca, "spiffe://shop.local/service/frontend", tmp / "tls")
    bindings = RuntimeBindings.model_validate({
        "version": "v1", "instance": "frontend-v1-0", "tls": files.model_dump(),
        "access_log": str(tmp / "access.log"), "listeners": {"outbound": 1, "admin": 2},
        "endpoints": {"reviews": {"v1": ["127.0.0.1:9"], "v2": ["127.0.0.1:9"]}}})
    frontend = frontend.model_copy(update={"telemetry": frontend.telemetry.model_copy(
        update={"otlp_endpoint": "http://127.0.0.1:9"})})
    headers = {"host": "reviews", "user-agent": "wrk", "x-request-id": "4c1f",
               "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    out_request = Request("GET", "/reviews/1", "reviews", headers, authority="reviews",
                          source_version="v1")
    gw_request = Request("GET", "/products", "", {"host": "shop", "user-agent": "wrk"},
                         authority="shop", listener=None)
    in_request = Request("GET", "/reviews/1", inbound=True,
                         identity="spiffe://shop.local/service/frontend")
    cert = certs.Cert.from_pem(Path(files.cert_file).read_bytes())
    client_flow = tflow.tflow()
    client_flow.client_conn.timestamp_tls_setup = 1.0  # tls_established
    client_flow.client_conn.certificate_list = [cert]
    span = ("client", "GET default", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7",
            "00f067aa0ba902b7", 1, 2, False, [
                ("http.request.method", "GET"), ("url.path", "/reviews/1"),
                ("server.address", "reviews"), ("network.protocol.version", "1.1"),
                ("http.response.status_code", 200), ("meshctl.response_flags", "-"),
                ("peer.service", "reviews.default.svc.cluster.local"),
                ("meshctl.route_rule", "default"), ("network.peer.address", "127.0.0.1:9082"),
                ("guid:x-request-id", "4c1f"), ("user_agent.original", "wrk")])
    batch = [span] * 512
    times: dict[str, float] = {}

    def time(name: str, fn: Any, number: int = 2000) -> None:
        best = min(timeit.repeat(fn, number=number, repeat=repeat))
        times[name] = round(best / number * 1e6, 2)

    async def run() -> None:
        rt = SidecarRuntime(frontend, bindings)
        flow = tflow.tflow(resp=True)
        flow.request.headers["traceparent"] = headers["traceparent"]

        def finish() -> None:
            info = FlowInfo("outbound", rt.snapshot)
            info.headers = header_dict(flow.request)
            info.service, info.version, info.rule = "reviews", "v1", "default"
            info.endpoint, info.attempts = "127.0.0.1:9", 1
            info.traceparent = tracing.next_traceparent(info.headers.get("traceparent"), 1.0)
            reporting.finish(rt, flow, info, 200)
            rt.spans._queue.clear()  # keep recording (a full queue drops instead)

        time("decide: outbound request (route, split, retries)", lambda: decide(frontend, out_request))
        time("decide: gateway request (gateway rule, then route)", lambda: decide(gateway, gw_request))
        time("decide: inbound request (mTLS, access policy)", lambda: decide(reviews, in_request))
        time("end of a request: metrics, access log line, span (reporting.finish)", finish)
        time("encode one span for export (batches of 512)", lambda: tracing.encode(batch, rt.spans.resource), 20)
        times["encode one span for export (batches of 512)"] = round(
            times["encode one span for export (batches of 512)"] / 512, 2)
        time("caller identity from its certificate (inbound)", lambda: inbound.peer_identity(client_flow))
        time("TLS settings of a call to another sidecar", lambda: rt.peer_tls(rt.snapshot, "reviews", "127.0.0.1:9"))
        time("traceparent for the next hop", lambda: tracing.next_traceparent(headers["traceparent"], 1.0))
        rt.access_log.close()

    asyncio.run(run())
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.repeat)))
        return 0
    here = HERE.parents[2]
    trees = {"current": here} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    rows: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    for n in range(args.rounds):
        for name, tree in (list(trees.items()) if n % 2 == 0 else list(trees.items())[::-1]):
            out = subprocess.run(
                [str(tree / ".venv" / "bin" / "python"), "-OO", str(HERE), "--child",
                 "--repeat", str(args.repeat)], cwd=tree, check=True, capture_output=True, text=True,
                env={**os.environ, "PYTHONPATH": str(tree)}).stdout
            for step, us in json.loads(out.splitlines()[-1]).items():
                rows[name].setdefault(step, []).append(us)
        print(f"round {n + 1} done, load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    print(f"| step (µs per call, min of {args.repeat} repeats, median of {args.rounds} rounds) "
          "| current |" + (" baseline | current / baseline |" if args.baseline else ""))
    print("|---|---:|" + ("---:|---:|" if args.baseline else ""))
    for step, values in rows["current"].items():
        cur = statistics.median(values)
        line = f"| {step} | {cur:.2f} |"
        if args.baseline:
            base = statistics.median(rows["baseline"][step])
            line += f" {base:.2f} | {cur / base:.2f} |"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
