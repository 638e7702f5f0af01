"""Benchmark: `meshctl validate` and `meshctl compile` on a generated 1,000-service repository.

Usage: python bench/validate/run.py [--services 1000] [--runs 5]

Generates the repository (bench/gen_policy.py: 1,000 services, 1,000 routes, 1,000 access
policies, one document per file), then times, as whole processes and interleaved in one run:
- `check-jsonschema` validating the same files against the same committed schemas (schema only;
  one process per kind, since it takes one schema per run), the baseline;
- `meshctl validate` (schema + semantic checks);
- `meshctl compile` (validate + compile + write 1,001 sidecar configs).
Prints the median and min of each, and the ratio to the baseline. Targets: validate no slower
than check-jsonschema and under 2 s; compile under 2 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from gen_policy import generate  # noqa: E402

BIN = Path(sys.executable).parent
KIND_DIRS = {"services": "service", "routes": "route", "access": "accesspolicy"}


def timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def check(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        policy = work / "mesh.d"
        generate(policy, args.services)
        documents = sum(1 for _ in policy.rglob("*.yaml"))

        def check_jsonschema() -> None:
            for sub, kind in KIND_DIRS.items():
                files = sorted(str(p) for p in (policy / sub).glob("*.yaml"))
                schema = ROOT / "schemas" / f"{kind}.schema.json"
                check([str(BIN / "check-jsonschema"), "--schemafile", str(schema), *files], work)

        cases: dict[str, Callable[[], None]] = {
            "check-jsonschema (schema only)": check_jsonschema,
            "meshctl validate (schema + semantic)": lambda: check(
                [str(BIN / "meshctl"), "validate", str(policy)], work),
            "meshctl compile (validate + compile + write)": lambda: check(
                [str(BIN / "meshctl"), "compile", str(policy), "--out", str(work / "out")], work),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):  # interleaved, so machine noise hits every case alike
            for name, run in cases.items():
                times[name].append(timed(run))
    baseline = statistics.median(times["check-jsonschema (schema only)"])
    print(f"{args.services} services, {documents} documents, {args.runs} runs each\n")
    print("| command | median s | min s | vs check-jsonschema |")
    print("| --- | --- | --- | --- |")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {min(values):.2f} | {median / baseline:.2f}x |")


if __name__ == "__main__":
    main()
