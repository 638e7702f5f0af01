"""Runtime benchmarks: `up` of an N-service mesh until ready, and `apply` until every one of N
sidecars is confirmed on the new revision.

Usage:
  python bench/runtime/run.py up --services 20
  python bench/runtime/run.py apply --sidecars 50 [--waves]
  python bench/runtime/run.py all            (both, results in bench/results/runtime.json)

Each run builds a throwaway git repository with N services (one instance each, running the
shop's catalog app), mTLS strict, and drives the real CLI. Numbers depend on the machine's
cores: starting a sidecar costs about a second of CPU (Python + mitmproxy imports).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "runtime.json"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
}

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
      run: [python, -m, shop.catalog]
"""


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "MESHCTL_"))}
    return clean | GIT_ENV


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=env(), check=True, capture_output=True)


def write_policy(repo: Path, services: int, timeout: str) -> None:
    text = MESH % timeout + "".join(SERVICE % i for i in range(services))
    (repo / "mesh.d").mkdir(exist_ok=True)
    (repo / "mesh.d" / "mesh.yaml").write_text(text)


def make_repo(base: Path, services: int) -> Path:
    repo = base / "repo"
    repo.mkdir()
    shutil.copytree(ROOT / "shop", repo / "shop", ignore=shutil.ignore_patterns("__pycache__"))
    write_policy(repo, services, "5s")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bench mesh")
    return repo


def meshctl(repo: Path, *args: str, timeout: float = 900) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "meshctl", *args], cwd=repo, env=env(), text=True,
        capture_output=True, timeout=timeout,
    )
    return time.monotonic() - start, proc


def up(repo: Path) -> float:
    took, proc = meshctl(repo, "up", "--detach", "--gateway-port", "edge=0", "--timeout", "600")
    if proc.returncode != 0:
        raise SystemExit(f"up failed:\n{proc.stderr}")
    return took


def bench_up(services: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="meshctl-bench-") as tmp:
        repo = make_repo(Path(tmp), services)
        try:
            took = up(repo)
        finally:
            meshctl(repo, "down")
    return {"services": services, "processes": 2 * services + 1, "up_ready_s": round(took, 2)}


def bench_apply(sidecars: int, waves: bool) -> dict[str, Any]:
    services = sidecars  # one instance each; the gateway's sidecar comes on top
    with tempfile.TemporaryDirectory(prefix="meshctl-bench-") as tmp:
        repo = make_repo(Path(tmp), services)
        try:
            up_took = up(repo)
            results = []
            for i, timeout in enumerate(("6s", "7s", "8s")):
                write_policy(repo, services, timeout)  # changes every sidecar's config
                git(repo, "commit", "-q", "-am", f"timeout {timeout}")
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


def save(key: str, value: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[key] = value | {"cpus": os.cpu_count(), "load_at_start": os.getloadavg()[0]}
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["up", "apply", "all"])
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--sidecars", type=int, default=50)
    parser.add_argument("--waves", action="store_true")
    args = parser.parse_args()
    if args.what in ("up", "all"):
        result = bench_up(args.services)
        print(json.dumps(result))
        save(f"up_{args.services}", result)
    if args.what in ("apply", "all"):
        result = bench_apply(args.sidecars, args.waves)
        print(json.dumps(result))
        save(f"apply_{args.sidecars}{'_waves' if args.waves else ''}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
