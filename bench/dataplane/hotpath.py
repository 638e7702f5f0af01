"""Sidecar CPU per request on the shop's compiled policy, this tree against a baseline tree.

    .venv/bin/python -m bench.dataplane.hotpath [--baseline DIR] [--rounds 5] [--duration 5]
        [--connections 16] [--profile DIR]

The sidecars run the configs `meshctl compile` makes of `mesh.d/` (Istio labels, strict mTLS,
access policies, JSON access log to a file, tracing at sampling 1.0 exported by OTLP/HTTP to
a local sink): the frontend's outbound sidecar calls `http://reviews/reviews/1` (a sticky
90/10 split with retries and a timeout) over mutual TLS to the reviews inbound sidecar
(access policy: frontend, GET, /reviews/*), which forwards to the app; the public gateway
forwards `/` to the app directly (a plaintext endpoint). The app is an HAProxy responder, so
it is never the bottleneck. Stock `mitmdump --mode reverse` (no addon) to the same app is the
reference.

With `--baseline DIR` (a work tree of another commit with its own `.venv`, e.g.
`git worktree add --detach ../base <commit> && (cd ../base && scripts/setup)`), the same
sidecars also run from that tree: each tree compiles `mesh.d/` with its own compiler and
starts its own `python -OO -m proxy_addon`. Rounds alternate the trees (ABBA order), so the
drifting load of a shared machine hits both alike. Reported per tree and path: sidecar CPU
per request (utime + stime from /proc over the requests wrk counted: the figure load disturbs
least), req/s, and the p50 added at one connection against the app reached directly.

`--profile DIR`: instead, run py-spy (`pip install py-spy`) on each sidecar of this tree
under load and write collapsed stacks plus a summary of the top functions (self and total).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.dataplane.run import app_mitmdump_sink, cpu_seconds, wrk
from meshctl.identity import MeshCA, write_sidecar_certs
from tests.support.procs import REPO, Sidecar, free_port

RESULTS = REPO / "bench" / "results" / "hotpath.json"
# Run by each tree's own Python: compile mesh.d with that tree's compiler, point the spans at
# the sink, write the three configs used here as JSON.
COMPILE = """
import sys
from pathlib import Path
from meshctl.pipeline import build
from meshctl.sources.worktree import read_worktree
out, sink = Path(sys.argv[1]), sys.argv[2]
result = build(read_worktree(Path("mesh.d")), "bench")
assert result.compiled is not None, result.diagnostics
out.mkdir(parents=True, exist_ok=True)
for name in ("frontend", "reviews", "gateway/public"):
    config = result.compiled.configs[name]
    telemetry = config.telemetry.model_copy(update={"otlp_endpoint": sink})
    config = config.model_copy(update={"telemetry": telemetry})
    (out / (name.replace("/", "-") + ".json")).write_text(config.model_dump_json())
from bench.dataplane.run import realistic_config  # bench/dataplane/run.py's one-hop policy
(out / "one-hop.json").write_text(realistic_config("productpage").model_dump_json())
"""


def python_of(tree: Path) -> str:
    return str(tree / ".venv" / "bin" / "python")


CPROFILE: Path | None = None  # --profile with --cprofile: each sidecar runs under cProfile


def start(tree: Path, workdir: Path, config: Path, bindings: dict[str, Any]) -> Sidecar:
    """`python -OO -m proxy_addon` of `tree` on a compiled config and hand-written bindings
    (plain JSON, so that trees with different contract code read the same file)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "bindings.json").write_text(json.dumps(bindings))
    shutil.copy(config, workdir / "config.json")
    prof = ["-m", "cProfile", "-o", str(CPROFILE / f"{workdir.name}.prof")] if CPROFILE else []
    args = [python_of(tree), "-OO", *prof, "-m", "proxy_addon", "--config", str(workdir / "config.json"),
            "--bindings", str(workdir / "bindings.json")]
    with open(workdir / "stdout", "wb") as out, open(workdir / "sidecar.err", "wb") as err:
        proc = subprocess.Popen(args, cwd=tree, stdout=out, stderr=err)
    from meshctl.contract import RuntimeBindings, SidecarConfig

    sidecar = Sidecar(workdir, SidecarConfig.model_validate_json(config.read_text()),
                      RuntimeBindings.model_validate(bindings), proc, workdir / "access.log",
                      workdir / "sidecar.err")
    sidecar.wait_ready()
    return sidecar


class Mesh:
    """One tree's three sidecars: frontend (outbound), reviews (inbound), the gateway."""

    def __init__(self, tree: Path, root: Path, ca: MeshCA, app: int, sink: str) -> None:
        self.tree = tree
        configs = root / "configs"
        subprocess.run([python_of(tree), "-c", COMPILE, str(configs), sink], cwd=tree, check=True)
        tls = {name: write_sidecar_certs(ca, ident, root / "tls" / name).model_dump()
               for name, ident in (("frontend", "spiffe://shop.local/service/frontend"),
                                   ("reviews", "spiffe://shop.local/service/reviews"),
                                   ("gateway", "spiffe://shop.local/gateway/public"))}
        app_addr = f"127.0.0.1:{app}"
        self.reviews = start(tree, root / "reviews", configs / "reviews.json", {
            "version": "v1", "instance": "reviews-v1-0", "app": app_addr, "tls": tls["reviews"],
            "access_log": str(root / "reviews" / "access.log"),
            "listeners": {"inbound": free_port(), "admin": free_port()}})
        inbound = self.reviews.inbound_address
        self.frontend = start(tree, root / "frontend", configs / "frontend.json", {
            "version": "v1", "instance": "frontend-v1-0", "tls": tls["frontend"],
            "access_log": str(root / "frontend" / "access.log"),
            "listeners": {"outbound": free_port(), "admin": free_port()},
            "endpoints": {"reviews": {"v1": [inbound], "v2": [inbound]}}})
        self.one_hop = start(tree, root / "one-hop", configs / "one-hop.json", {
            "version": "v1", "instance": "productpage-v1-0",
            "access_log": str(root / "one-hop" / "access.log"),
            "listeners": {"outbound": free_port(), "admin": free_port()},
            "endpoints": {"reviews": {"v1": [app_addr], "v2": [app_addr]}}})
        self.gateway_port = free_port()
        self.gateway = start(tree, root / "gateway", configs / "gateway-public.json", {
            "instance": "gateway-public-0", "tls": tls["gateway"], "access_log": str(root / "gateway" / "access.log"),
            "listeners": {"outbound": self.gateway_port, "admin": free_port()},
            "endpoints": {"frontend": {"v1": [app_addr]}}, "plaintext_endpoints": [app_addr]})

    def paths(self, scripts: dict[str, Path]) -> dict[str, tuple[str, Path | None, list[int]]]:
        """name -> (url, wrk script, pids whose CPU the requests cost)."""
        return {
            "1 hop, data-plane policy (outbound -> app)": (
                self.one_hop.outbound_proxy + "/", scripts["one-hop"], [self.one_hop.proc.pid]),
            "outbound -> mTLS -> inbound -> app": (
                self.frontend.outbound_proxy + "/", scripts["reviews"],
                [self.frontend.proc.pid, self.reviews.proc.pid]),
            "gateway -> app": (f"http://127.0.0.1:{self.gateway_port}/", None,
                               [self.gateway.proc.pid]),
        }

    def stop(self) -> None:
        for sc in (self.gateway, self.frontend, self.reviews, self.one_hop):
            sc.stop()


def lua(tmp: Path) -> dict[str, Path]:
    path = tmp / "reviews.lua"
    path.write_text(  # as the frontend app calls it through HTTP_PROXY
        'local req = wrk.format("GET", "http://reviews/reviews/1", {["Host"] = "reviews"})\n'
        "request = function() return req end\n")
    one = tmp / "one-hop.lua"  # bench/dataplane/run.py's request
    one.write_text(
        'local req = wrk.format("GET", "http://reviews/products/1", {["Host"] = "reviews"})\n'
        "request = function() return req end\n")
    return {"reviews": path, "one-hop": one}


def load(url: str, script: Path | None, pids: list[int], connections: int,
         duration: float) -> dict[str, float]:
    before = [cpu_seconds([pid]) for pid in pids]
    r = wrk(url, connections, duration, script)
    each = [(cpu_seconds([pid]) - b) * 1000 / max(r["total"], 1) for pid, b in zip(pids, before, strict=True)]
    r["cpu_ms"] = sum(each)
    for n, value in enumerate(each):
        r[f"cpu_ms_{n}"] = value  # per process, in the order of `pids`
    return r


def profile(mesh: Mesh, scripts: dict[str, Path], out: Path, args: argparse.Namespace) -> None:
    """py-spy on every sidecar of one path while wrk loads it (or, with --cprofile, only the
    load: the sidecars write their cProfile stats when they stop)."""
    out.mkdir(parents=True, exist_ok=True)
    if args.cprofile:
        for name, (url, script, pids) in mesh.paths(scripts).items():
            r = load(url, script, pids, args.connections, args.duration)
            print(f"{name}: {r['rps']:.0f} req/s, {r['cpu_ms']:.3f} ms CPU/req", file=sys.stderr)
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    for name, (url, script, pids) in mesh.paths(scripts).items():
        wrk(url, 4, 1, script)
        tag = "2hop" if "inbound" in name else "gateway" if "gateway" in name else "1hop"
        spies = [subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--rate", "500", "--duration",
             str(int(args.duration)), "--format", "raw", "--output",
             str(out / f"{tag}-{pid}.txt"), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]
        r = load(url, script, pids, args.connections, args.duration)
        for spy_proc in spies:
            spy_proc.wait(timeout=60)
        print(f"{name}: {r['rps']:.0f} req/s, {r['cpu_ms']:.3f} ms CPU/req", file=sys.stderr)
        for pid in pids:
            print(summarize(out / f"{tag}-{pid}.txt", pid))


def summarize(path: Path, pid: int, top: int = 40) -> str:
    """Self and total samples per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  for f in stack.split(";") if f]
        samples += n
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"== pid {pid}: {samples} samples", "-- self"]
    lines += [f"{100 * n / samples:5.1f}% {f}" for f, n in own.most_common(top)]
    lines.append("-- total")
    lines += [f"{100 * n / samples:5.1f}% {f}" for f, n in total.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--cprofile", action="store_true", help="with --profile: cProfile")
    args = parser.parse_args()
    if args.profile is not None and args.cprofile:
        global CPROFILE
        CPROFILE = args.profile.resolve()
        CPROFILE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="meshctl-bench-hotpath-"))
    procs: list[subprocess.Popen[bytes]] = []
    meshes: dict[str, Mesh] = {}
    try:
        app, mitm, sink = app_mitmdump_sink(tmp, procs)
        ca = MeshCA.load_or_create(tmp / "ca", "shop.local")
        scripts = lua(tmp)
        sink_url = f"http://127.0.0.1:{sink}"
        meshes["current"] = Mesh(REPO, tmp / "current", ca, app, sink_url)
        if args.profile is not None:
            profile(meshes["current"], scripts, args.profile, args)
            meshes.pop("current").stop()
            return 0
        if args.baseline is not None:
            meshes["baseline"] = Mesh(args.baseline.resolve(), tmp / "baseline", ca, app, sink_url)
        direct = f"http://127.0.0.1:{app}/"
        stock_url = f"http://127.0.0.1:{mitm}/"
        rows: dict[str, list[dict[str, float]]] = {}
        names = list(meshes)
        print(f"load average {os.getloadavg()}", file=sys.stderr)
        for round_no in range(args.rounds):
            order = names if round_no % 2 == 0 else names[::-1]
            stock = load(stock_url, None, [procs[1].pid], args.connections, args.duration)
            rows.setdefault("stock mitmdump", []).append(stock)
            for tree in order:
                for path, (url, script, pids) in meshes[tree].paths(scripts).items():
                    wrk(url, 4, 1, script)  # warm-up: pools, handshakes
                    r = load(url, script, pids, args.connections, args.duration)
                    base = wrk(direct, 1, 3, None)["p50"]
                    r["added_p50_1conn_ms"] = wrk(url, 1, 3, script)["p50"] - base
                    r["vs_stock_rps"] = r["rps"] / max(stock["rps"], 1.0)
                    r["vs_stock_cpu_per_hop"] = stock["cpu_ms"] / (r["cpu_ms"] / len(pids))
                    rows.setdefault(f"{tree}: {path}", []).append(r)
                    print(f"round {round_no + 1} {tree}: {path}: {r['rps']:.0f} req/s "
                          f"{r['cpu_ms']:.3f} ms CPU/req, +{r['added_p50_1conn_ms']:.2f} ms p50 "
                          f"at 1 conn, errors {r['errors']:.0f}", file=sys.stderr)
            print(f"round {round_no + 1} stock mitmdump {stock['rps']:.0f} req/s "
                  f"{stock['cpu_ms']:.3f} ms CPU/req; load {os.getloadavg()[0]:.1f}", file=sys.stderr)
        report(rows, args)
        return 0
    finally:
        for mesh in meshes.values():
            mesh.stop()
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def report(rows: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    med = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
           for name, runs in rows.items()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rounds": rows,
        "median": med, "duration_s": args.duration, "connections": args.connections,
    }, indent=1) + "\n")
    print(f"| path ({args.connections} conns; medians of {args.rounds} rounds) | req/s "
          "| req/s vs stock mitmdump | CPU ms/req (each sidecar) "
          "| stock mitmdump CPU / sidecar CPU per hop | added p50 ms at 1 conn | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, m in med.items():
        if name == "stock mitmdump":
            print(f"| {name} | {m['rps']:.0f} | 1.00 | {m['cpu_ms']:.3f} | 1.00 | - "
                  f"| {m['errors']:.0f} |")
            continue
        each = " + ".join(f"{m[k]:.3f}" for k in sorted(m) if k.startswith("cpu_ms_"))
        print(f"| {name} | {m['rps']:.0f} | {m['vs_stock_rps']:.2f} | {m['cpu_ms']:.3f} ({each}) "
              f"| {m['vs_stock_cpu_per_hop']:.2f} | {m['added_p50_1conn_ms']:.2f} "
              f"| {m['errors']:.0f} |")
    for path in dict.fromkeys(name.split(": ", 1)[1] for name in med if ": " in name):
        if f"baseline: {path}" in rows and f"current: {path}" in rows:
            ratios = [c["cpu_ms"] / b["cpu_ms"] for b, c in
                      zip(rows[f"baseline: {path}"], rows[f"current: {path}"], strict=True)]
            print(f"- {path}: current / baseline CPU per request, per round "
                  f"{[round(x, 3) for x in ratios]}, median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    sys.exit(main())
