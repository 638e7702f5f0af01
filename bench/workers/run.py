"""Gateway workers: requests per second through a gateway with 2 workers against 1, and a hot
reload under load with 2 workers.

    .venv/bin/python -m bench.workers.run [--duration 8] [--rounds 4] [--connections 64]

One mesh started with the real CLI (`meshctl up`, the supervisor, compiled policy) holding two
gateways in front of the same static service: `one` (workers: 1) and `two` (workers: 2), with
the same rule (a response header set), so a request costs each the same work. The
service is a static endpoint: HAProxy answering every request itself (`http-request return`,
one thread), far cheaper per request than a Python gateway, so it is never the bottleneck.
Rounds alternate between the gateways (the order swaps every round), wrk with 1 thread;
the idle gateway costs nothing meanwhile. Reported per round: req/s, p50/p99, the gateway
processes' CPU per request and how much of the run they were on a CPU, wrk's own CPU, and the
load average of the (shared) machine. Then a hot reload: wrk on `two` while `meshctl apply`
changes the response headers of its rule; every response must be 2xx with no socket error,
and both workers must report the new revision.
Results also go to bench/results/workers.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.mtls.run import cpu_seconds, parse_wrk
from tests.support.git import commit_all, git_env
from tests.support.meshdir import policy_root, write_policy

WRK_TIMEOUT = "10s"
ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "workers.json"

POLICY = """\
apiVersion: meshctl/v1alpha1
kind: Mesh
metadata: {name: bench}
spec:
  trustDomain: bench.local
  mtls: disabled
  telemetry: {accessLog: "off", tracing: {sampling: 0}}
  rollout:
    gate: {window: 1s, maxErrorRate: 1, maxP99: 10s}
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: static}
spec:
  versions:
    - {name: v1, endpoints: ["127.0.0.1:%(backend)d"]}
---
apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {name: one}
spec:
  port: %(one)d
  workers: 1
  rules:
    - name: all
      service: static
      headers: {response: {set: {x-bench-round: "%(mark)s"}}}
---
apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {name: two}
spec:
  port: %(two)d
  workers: 2
  rules:
    - name: all
      service: static
      headers: {response: {set: {x-bench-round: "%(mark)s"}}}
"""

HAPROXY = """\
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend static
    bind 127.0.0.1:%(port)d
    http-request return status 200 content-type text/plain string "ok"
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def meshctl(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = git_env()
    env.pop("MESHCTL_STATE", None)
    return subprocess.run([sys.executable, "-m", "meshctl", *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)


def gateway_pids(state: Path, name: str) -> list[int]:
    procs = json.loads((state / "state.json").read_text())["processes"]
    instance = f"gateway-{name}"
    return [p["pid"] for n, p in sorted(procs.items())
            if (n == instance or n.startswith(instance + "_w")) and p.get("pid")]


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def socket_errors(text: str) -> dict[str, int]:
    found = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    counts = [int(n) for n in found.groups()] if found else [0, 0, 0, 0]
    return dict(zip(("connect", "read", "write", "timeout"), counts, strict=True))


def run_wrk(port: int, duration: float, connections: int, pids: list[int]) -> dict[str, Any]:
    cpu_before = cpu_seconds(pids)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = loadavg()
    started = time.monotonic()
    out = subprocess.run(
        # --timeout: on a loaded shared machine an answer may take seconds; wrk's default (2 s)
        # would count a slow answer as a failed request.
        ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", f"--timeout={WRK_TIMEOUT}",
         f"http://127.0.0.1:{port}/"], check=True, capture_output=True, text=True,
    ).stdout
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result: dict[str, Any] = parse_wrk(out)
    requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    gateway_cpu = cpu_seconds(pids) - cpu_before
    result.update(
        requests=requests,
        socket_errors=sum(socket_errors(out).values()),
        socket_error_kinds=socket_errors(out),
        gateway_cpu_ms_per_request=round(gateway_cpu * 1000 / max(requests, 1), 4),
        gateway_cores_busy=round(gateway_cpu / wall, 2),  # 2.0: two full cores
        wrk_cores_busy=round((after.ru_utime + after.ru_stime - children.ru_utime
                              - children.ru_stime) / wall, 2),
        loadavg_before=load_before, loadavg_after=loadavg(),
    )
    return result


def wait_revision(admin_ports: list[int], revision: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = set()
        for port in admin_ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/revision", timeout=2) as r:
                    seen.add(json.loads(r.read())["revision"])
            except OSError:
                seen.add(None)
        if seen == {revision}:
            return True
        time.sleep(0.1)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("haproxy") is None:
        sys.exit("bench.workers needs wrk and haproxy on PATH")

    tmp = Path(tempfile.mkdtemp(prefix="meshctl-bench-workers-"))
    repo = tmp / "repo"
    backend, one, two = free_port(), free_port(), free_port()
    (tmp / "haproxy.cfg").write_text(HAPROXY % {"port": backend})
    haproxy = subprocess.Popen(["haproxy", "-f", str(tmp / "haproxy.cfg")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ports = {"backend": backend, "one": one, "two": two}
    policy_root(repo, {"mesh.yaml": POLICY % {**ports, "mark": "a"}}, ignore_state=True,
                commit="bench mesh")
    state = repo / ".meshctl"
    report: dict[str, Any] = {"cores": os.cpu_count(), "duration_s": args.duration,
                              "connections": args.connections, "wrk_threads": 1,
                              "wrk_timeout": WRK_TIMEOUT,
                              "backend": "haproxy http-request return (nbthread 1)"}
    try:
        up = meshctl(repo, "up", "--detach", "--timeout", "120")
        if up.returncode != 0:
            sys.exit(f"meshctl up failed:\n{up.stderr}")
        pids = {"one": gateway_pids(state, "one"), "two": gateway_pids(state, "two")}
        assert len(pids["one"]) == 1 and len(pids["two"]) == 2, pids
        # Warm both (pools, first-request paths) before measuring.
        for name in ("one", "two"):
            run_wrk(ports[name], 2, args.connections, pids[name])
        rounds: list[dict[str, Any]] = []
        for i in range(args.rounds):
            order = ("one", "two") if i % 2 == 0 else ("two", "one")
            row: dict[str, Any] = {name: run_wrk(ports[name], args.duration, args.connections, pids[name])
                   for name in order}
            row["ratio"] = round(row["two"]["rps"] / row["one"]["rps"], 3)
            rounds.append(row)
            print(f"round {i + 1}: 1 worker {row['one']['rps']:.0f} req/s "
                  f"({row['one']['gateway_cores_busy']} cores), 2 workers {row['two']['rps']:.0f} "
                  f"req/s ({row['two']['gateway_cores_busy']} cores): {row['ratio']:.2f}x; "
                  f"load {row['one']['loadavg_before']:.1f}", flush=True)
        report["rounds"] = rounds
        report["ratio_median"] = statistics.median(float(r["ratio"]) for r in rounds)

        # Hot reload under load: 2 workers, wrk running, apply a change to the gateway's rule.
        admin = [s["admin_port"] for s in json.loads((state / "plan.json").read_text())["sidecars"]
                 if s["sidecar"] == "gateway/two"]
        write_policy(repo, {"mesh.yaml": POLICY % {**ports, "mark": "b"}})
        target = commit_all(repo, "new response header on both gateways")
        outcome: dict[str, Any] = {}

        def applier() -> None:
            time.sleep(2.0)
            started = time.monotonic()
            applied = meshctl(repo, "apply", "--window", "1s")
            outcome["apply_exit"] = applied.returncode
            outcome["apply_s"] = round(time.monotonic() - started, 2)
            outcome["apply_output"] = (applied.stdout + applied.stderr)[-1500:]

        thread = threading.Thread(target=applier)
        thread.start()
        reload_run = run_wrk(two, max(args.duration, 12.0), args.connections, pids["two"])
        thread.join()
        outcome.update(reload_run)
        outcome["both_workers_on_new_revision"] = wait_revision(admin, target)
        report["hot_reload"] = outcome
        print(f"hot reload under load: apply exit {outcome['apply_exit']} in {outcome['apply_s']}s, "
              f"{reload_run['requests']:.0f} requests, non-2xx {reload_run['non_2xx']:.0f}, "
              f"socket errors {reload_run['socket_error_kinds']}, both workers on {target[:12]}: "
              f"{outcome['both_workers_on_new_revision']}", flush=True)
        print(f"median ratio 2 workers / 1 worker: {report['ratio_median']:.2f}x", flush=True)
    finally:
        meshctl(repo, "down")
        haproxy.terminate()
        haproxy.wait(timeout=10)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=1) + "\n")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
