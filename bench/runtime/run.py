"""Runtime benchmarks: `up` of an N-service mesh until ready, and `apply` until every one of N
sidecars is confirmed on the new revision.

Usage:
  python -m bench.runtime.run up --services 20
  python -m bench.runtime.run apply --sidecars 50 [--waves]
  python -m bench.runtime.run all            (both, results in bench/results/runtime.json)
  python -m bench.runtime.run spawn --services 20 --rounds 3 [--app static] [--baseline DIR]
      `up --detach` until ready, sidecars forked (the fork server) and exec'd (the previous
      design, MESHCTL_SIDECAR_SPAWN=exec), in rotating rounds; with --baseline (a work tree of
      another commit with its own .venv, as the other A/B benchmarks take), a third mode runs
      that tree's meshctl
  python -m bench.runtime.run memory --services 20 --requests 10000
      PSS and RSS of every sidecar, idle and after N requests through each, both ways
  python -m bench.runtime.run interpreter --rounds 5 [--baseline DIR]
      CPU of one interpreter start in the venv (`python -c pass`), of the catalog app's
      imports and of the CLI's, 20 starts a round, this tree against the baseline's venv in alternating rounds
  python -m bench.runtime.run timeline --services 20 --rounds 3 [--app static]
      where one `up --detach` spends its time: when plan.json was written, when the fork
      server was ready, when the apps and sidecars were started and ready

Each run builds a throwaway git repository with N services (one instance each, running the
shop's catalog app, or with --app static a standard-library app: `static_app.py`), mTLS strict,
and drives the real CLI. Numbers depend on the machine's cores: an exec'd sidecar costs about a
second of CPU (Python + mitmproxy imports), a catalog app ~0.3 s (aiohttp), a static one ~0.1 s.
Each round first waits (up to a minute) for the machine to be quiet: this machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.git import commit_all, git_env
from tests.support.meshdir import policy_root, write_policy

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "runtime.json"
MESH = """apiVersion: meshctl/v1alpha1
kind: Mesh
metadata: {name: bench}
spec:
  trustDomain: bench.local
  mtls: strict
  defaults: {timeout: %s}
---
apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {name: edge}
spec:
  port: 8080
  rules: [{name: all, service: svc-00}]
"""
SERVICE = """---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: svc-%02d}
spec:
  versions:
    - name: v1
      run: %s
"""
APPS = {
    "catalog": "[python, -m, shop.catalog]",
    "static": f"[python, {Path(__file__).with_name('static_app.py')}]",
}


@dataclass
class RunSettings:
    """What the round in progress runs: the app, meshctl's interpreter (this tree's or the
    baseline's) and the environment it adds (MESHCTL_SIDECAR_SPAWN)."""

    app: str = APPS["catalog"]
    python: str = sys.executable
    env: dict[str, str] = field(default_factory=dict)


RUN = RunSettings()


def env() -> dict[str, str]:
    """For meshctl: none of this shell's GIT_* or MESHCTL_* settings, the tests' git author.
    Bytecode caching on, as in a user's shell: with PYTHONDONTWRITEBYTECODE set every CLI,
    supervisor and app start compiles meshctl's sources again (~0.1 s of CPU each)."""
    kept = {k: v for k, v in os.environ.items()
            if not k.startswith("MESHCTL_") and k != "PYTHONDONTWRITEBYTECODE"}
    return git_env(kept) | RUN.env


def busy_share() -> float:
    """Share of both cores used by everything on the machine over the last half second."""
    import psutil

    return float(psutil.cpu_percent(interval=0.5)) / 100


def wait_quiet(limit: float = 0.15, longest_s: float = 60.0) -> float:
    """Until the machine is nearly idle (or `longest_s`); the busy share last seen."""
    deadline = time.monotonic() + longest_s
    share = busy_share()
    while share > limit and time.monotonic() < deadline:
        share = busy_share()
    return round(share, 2)


def policy_text(services: int, timeout: str) -> dict[str, str]:
    return {"mesh.yaml": MESH % timeout + "".join(SERVICE % (i, RUN.app) for i in range(services))}


def make_repo(base: Path, services: int) -> Path:
    return policy_root(base / "repo", policy_text(services, "5s"), apps=True, commit="bench mesh")


def meshctl(repo: Path, *args: str, timeout: float = 900) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.monotonic()
    proc = subprocess.run(
        [RUN.python, "-m", "meshctl", *args], cwd=repo, env=env(), text=True,
        capture_output=True, timeout=timeout,
    )
    return time.monotonic() - start, proc


def up(repo: Path) -> float:
    took, proc = meshctl(repo, "up", "--detach", "--gateway-port", "edge=0", "--timeout", "600")
    if proc.returncode != 0:
        raise SystemExit(f"up failed:\n{proc.stderr}")
    return took


def mesh_cpu(state: Path) -> dict[str, float]:
    """CPU seconds (user + system) the supervisor, the fork server, the apps and the sidecars
    have used so far: what starting the mesh cost, whatever else the machine runs."""
    import psutil

    observed = json.loads((state / "state.json").read_text())
    pids = [(p["role"] if p["role"] == "app" else "sidecars", p["pid"])
            for p in observed["processes"].values() if p.get("pid")]
    pids.append(("supervisor", int((state / "supervisor.pid").read_text().split()[0])))
    if (observed.get("forkserver") or {}).get("pid"):
        pids.append(("forkserver", observed["forkserver"]["pid"]))
    total: dict[str, float] = {"app": 0.0, "sidecars": 0.0, "supervisor": 0.0, "forkserver": 0.0}
    for kind, pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total[kind] += t.user + t.system
    return {k: round(v, 2) for k, v in total.items()}


def bench_up(services: int) -> dict[str, Any]:
    import resource

    with tempfile.TemporaryDirectory(prefix="meshctl-bench-") as tmp:
        repo = make_repo(Path(tmp), services)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            took = up(repo)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cli = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            cpu = mesh_cpu(repo / ".meshctl")
        finally:
            meshctl(repo, "down")
    return {"services": services, "processes": 2 * services + 1, "up_ready_s": round(took, 2),
            "cli_cpu_s": round(cli, 2), "mesh_cpu_s": round(sum(cpu.values()), 2),
            "cpu_by_kind_s": cpu}


def bench_apply(sidecars: int, waves: bool) -> dict[str, Any]:
    services = sidecars  # one instance each; the gateway's sidecar comes on top
    with tempfile.TemporaryDirectory(prefix="meshctl-bench-") as tmp:
        repo = make_repo(Path(tmp), services)
        try:
            up_took = up(repo)
            results = []
            for i, timeout in enumerate(("6s", "7s", "8s")):
                write_policy(repo, policy_text(services, timeout))  # every sidecar's config changes
                commit_all(repo, f"timeout {timeout}")
                canary = ["--canary", "1"] if waves else ["--canary", "100%"]
                took, proc = meshctl(repo, "apply", "--window", "0s", *canary)
                if proc.returncode != 0:
                    raise SystemExit(f"apply failed:\n{proc.stderr}")
                confirm = float(re.search(r"confirmation took ([0-9.]+)s", proc.stdout).group(1))  # type: ignore[union-attr]
                updated = int(re.search(r"running on (\d+) updated", proc.stdout).group(1))  # type: ignore[union-attr]
                results.append({"run": i + 1, "updated": updated, "apply_wall_s": round(took, 2),
                                "confirm_s": round(confirm, 3)})
        finally:
            meshctl(repo, "down")
    return {
        "sidecars": sidecars + 1,
        "waves": "canary 1 + rest" if waves else "one wave",
        "up_ready_s": round(up_took, 2),
        "runs": results,
    }


def bench_spawn(services: int, rounds: int, baseline: Path | None = None) -> dict[str, Any]:
    """Rotating rounds: fork, exec (and the baseline tree's meshctl), the order rotating every
    round, each a fresh mesh from nothing."""
    modes = ["fork", "exec"] + (["baseline"] if baseline else [])
    runs: list[dict[str, Any]] = []
    for i in range(rounds):
        for mode in modes[i % len(modes):] + modes[:i % len(modes)]:
            RUN.env = {"MESHCTL_SIDECAR_SPAWN": "exec" if mode == "exec" else "fork"}
            RUN.python = (str(baseline.resolve() / ".venv" / "bin" / "python")
                          if mode == "baseline" and baseline is not None else sys.executable)
            busy = wait_quiet()
            load = os.getloadavg()[0]
            result = bench_up(services)
            apps = result["cpu_by_kind_s"].get("app", 0.0)
            runs.append({"spawn": mode, "up_ready_s": result["up_ready_s"],
                         "cli_cpu_s": result["cli_cpu_s"], "mesh_cpu_s": result["mesh_cpu_s"],
                         "cpu_by_kind_s": result["cpu_by_kind_s"],
                         # what the mesh itself spent until ready: everything but the apps
                         "mesh_own_cpu_s": round(result["mesh_cpu_s"] - apps + result["cli_cpu_s"], 2),
                         "load_before": round(load, 1), "busy_before": busy})
            print(json.dumps(runs[-1]), flush=True)
    RUN.env, RUN.python = {}, sys.executable
    summary = {}
    for mode in modes:
        times = sorted(r["up_ready_s"] for r in runs if r["spawn"] == mode)
        cpus = sorted(r["cli_cpu_s"] + r["mesh_cpu_s"] for r in runs if r["spawn"] == mode)
        summary[mode] = {"min_s": times[0], "median_s": times[len(times) // 2], "all_s": times,
                         "cpu_median_s": round(cpus[len(cpus) // 2], 2)}
    return {"services": services, "processes": 2 * services + 1, "app": RUN.app,
            "baseline": str(baseline) if baseline else None, "runs": runs, "summary": summary}


def start_cpu_ms(python: str, code: str, starts: int) -> float:
    """CPU (user + system) of one `python -c code` start, the mean of `starts` starts."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(starts):
        subprocess.run([python, "-c", code], cwd=ROOT, env=env(), check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return round(spent / starts * 1000, 1)


def bench_interpreter(rounds: int, baseline: Path | None, starts: int = 20) -> dict[str, Any]:
    """What every process the mesh execs pays before its own work: the venv's interpreter
    start (`pass`), the catalog app's imports and the CLI's, this tree's venv against the baseline's, in
    alternating rounds."""
    pythons = {"this tree": sys.executable}
    if baseline is not None:
        pythons["baseline"] = str(baseline.resolve() / ".venv" / "bin" / "python")
    codes = {"pass": "pass", "import shop.catalog": "import shop.catalog",
             "import meshctl.cli.main": "import meshctl.cli.main"}
    ms: dict[str, dict[str, list[float]]] = {name: {c: [] for c in codes} for name in pythons}
    for python in pythons.values():  # bytecode caches written before anything is timed
        subprocess.run([python, "-c", codes["import shop.catalog"]], cwd=ROOT, env=env(), check=True)
    for i in range(rounds):
        order = list(pythons) if i % 2 == 0 else list(reversed(pythons))
        for name in order:
            for label, code in codes.items():
                ms[name][label].append(start_cpu_ms(pythons[name], code, starts))
        print(json.dumps({"round": i + 1} | {n: {c: v[-1] for c, v in d.items()} for n, d in ms.items()}),
              flush=True)
    median = {n: {c: sorted(v)[len(v) // 2] for c, v in d.items()} for n, d in ms.items()}
    return {"starts_per_round": starts, "cpu_ms": ms, "median_cpu_ms": median,
            "baseline": str(baseline) if baseline else None}


def _logged_at(log: str, message: str) -> float | None:
    """The time of the first supervisor log line holding `message` (its asctime format)."""
    import datetime as dt

    found = re.search(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ " + re.escape(message), log, re.M)
    if found is None:
        return None
    return dt.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def bench_timeline(services: int) -> dict[str, Any]:
    """One `up --detach`, its milestones in seconds from the CLI's start."""
    with tempfile.TemporaryDirectory(prefix="meshctl-bench-") as tmp:
        repo = make_repo(Path(tmp), services)
        state = repo / ".meshctl"
        started = time.time()
        try:
            took = up(repo)
            observed = json.loads((state / "state.json").read_text())
            planned = (state / "plan.json").stat().st_mtime
            server_ready = _logged_at((state / "logs" / "supervisor.log").read_text(), "fork server ready")
        finally:
            meshctl(repo, "down")

    def since(t: float | None) -> float | None:
        return None if t is None else round(t - started, 2)

    out: dict[str, Any] = {"up_ready_s": round(took, 2), "plan_written": since(planned),
                           "fork_server_ready": since(server_ready)}
    for kind, apps in (("apps", True), ("sidecars", False)):
        procs = [p for p in observed["processes"].values() if (p["role"] == "app") == apps]
        starts = sorted(p["started_at"] for p in procs)
        ready = sorted(p["since"] for p in procs)  # the last change of status: to ready
        out[kind] = {"started": [since(starts[0]), since(starts[-1])],
                     "ready": [since(ready[0]), since(ready[len(ready) // 2]), since(ready[-1])]}
    return out


def sidecar_memory(state: Path) -> dict[str, Any]:
    import psutil

    observed = json.loads((state / "state.json").read_text())
    pss, rss = {}, {}
    for name, p in observed["processes"].items():
        if p["role"] == "app" or not p["pid"]:
            continue
        info = psutil.Process(p["pid"]).memory_full_info()
        pss[name], rss[name] = info.pss / 1e6, info.rss / 1e6
    server = observed.get("forkserver") or {}
    server_pss = psutil.Process(server["pid"]).memory_full_info().pss / 1e6 \
        if server.get("pid") else 0.0
    values = sorted(pss.values())
    return {
        "sidecars": len(values),
        "pss_mean_mb": round(sum(values) / len(values), 1),
        "pss_median_mb": round(values[len(values) // 2], 1),
        "pss_max_mb": round(values[-1], 1),
        "rss_mean_mb": round(sum(rss.values()) / len(rss), 1),
        "forkserver_pss_mb": round(server_pss, 1),
        "sidecars_and_server_pss_mb": round(sum(values) + server_pss, 1),
    }


async def _client(port: int, target: str, count: int, stats: dict[str, int]) -> None:
    """`count` keep-alive GETs on one connection: through a sidecar's outbound proxy to
    `target` (absolute URI), or to the gateway (`target` empty)."""
    import asyncio

    path = f"http://{target}/products/1" if target else "/products/1"
    host = target or f"127.0.0.1:{port}"
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            stats["ok" if status == 200 else "failed"] += 1
    except (OSError, ValueError, asyncio.IncompleteReadError):
        stats["failed"] += 1
    finally:
        writer.close()


def load_each(repo: Path, services: int, requests: int) -> dict[str, Any]:
    """`requests` through every sidecar: svc-i's outbound to svc-(i+1) for even i (both
    sidecars see them), and the gateway to svc-00; two keep-alive connections per flow."""
    import asyncio

    plan = json.loads((repo / ".meshctl" / "plan.json").read_text())
    by_instance = {s["instance"]: s for s in plan["sidecars"]}
    flows = [(by_instance[f"svc-{i:02d}-v1-0"]["outbound_port"], f"svc-{(i + 1) % services:02d}")
             for i in range(0, services, 2)]
    gateway = next(s for s in plan["sidecars"] if s["sidecar"] == "gateway/edge")
    flows.append((gateway["outbound_port"], ""))
    stats = {"ok": 0, "failed": 0}

    async def every() -> None:
        await asyncio.gather(*(_client(port, target, requests // 2, stats)
                               for port, target in flows for _ in range(2)))

    started = time.monotonic()
    asyncio.run(every())
    return {"flows": len(flows), "requests": stats["ok"] + stats["failed"],
            "failed": stats["failed"], "seconds": round(time.monotonic() - started, 1)}


def bench_memory(services: int, requests: int, rounds: int) -> dict[str, Any]:
    runs = []
    for i in range(rounds):
        for mode in ("fork", "exec") if i % 2 == 0 else ("exec", "fork"):
            RUN.env = {"MESHCTL_SIDECAR_SPAWN": mode}
            with tempfile.TemporaryDirectory(prefix="meshctl-bench-") as tmp:
                repo = make_repo(Path(tmp), services)
                try:
                    up(repo)
                    time.sleep(5)  # idle: health probes only
                    idle = sidecar_memory(repo / ".meshctl")
                    load = load_each(repo, services, requests)
                    time.sleep(2)
                    loaded = sidecar_memory(repo / ".meshctl")
                finally:
                    meshctl(repo, "down")
            runs.append({"spawn": mode, "idle": idle, "after_load": loaded, "load": load,
                         "load_avg": round(os.getloadavg()[0], 1)})
            print(json.dumps(runs[-1]), flush=True)
    RUN.env = {}
    return {"services": services, "requests_per_sidecar": requests, "runs": runs}


def save(key: str, value: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[key] = value | {"cpus": os.cpu_count(), "load_at_start": os.getloadavg()[0]}
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["up", "apply", "all", "spawn", "memory", "timeline",
                                         "interpreter"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--sidecars", type=int, default=50)
    parser.add_argument("--waves", action="store_true")
    parser.add_argument("--app", choices=sorted(APPS), default="catalog")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="spawn, interpreter: also run the meshctl of this work tree "
                        "(with its own .venv)")
    args = parser.parse_args()
    RUN.app = APPS[args.app]
    if args.what in ("up", "all"):
        result = bench_up(args.services)
        print(json.dumps(result))
        save(f"up_{args.services}", result)
    if args.what == "spawn":
        result = bench_spawn(args.services, args.rounds, args.baseline)
        print(json.dumps(result["summary"]))
        save(f"spawn_up_{args.services}_{args.app}", result)
    if args.what == "interpreter":
        result = bench_interpreter(args.rounds, args.baseline)
        print(json.dumps(result["median_cpu_ms"]))
        save("interpreter", result)
    if args.what == "timeline":
        rounds = []
        for _ in range(args.rounds):
            wait_quiet()
            rounds.append(bench_timeline(args.services))
            print(json.dumps(rounds[-1]), flush=True)
        save(f"timeline_{args.services}_{args.app}", {"rounds": rounds})
    if args.what == "memory":
        result = bench_memory(args.services, args.requests, args.rounds)
        save(f"memory_{args.services}", result)
    if args.what in ("apply", "all"):
        result = bench_apply(args.sidecars, args.waves)
        print(json.dumps(result))
        save(f"apply_{args.sidecars}{'_waves' if args.waves else ''}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
