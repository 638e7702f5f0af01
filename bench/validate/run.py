"""Benchmark: `meshctl validate` and `meshctl compile` on a generated 1,000-service repository.

Usage: python bench/validate/run.py [--services 1000] [--runs 5] [--baseline DIR]

Generates the repository (bench/gen_policy.py: 1,000 services, 1,000 routes, 1,000 access
policies, one document per file), then times, as whole processes and interleaved in one run:
- `check-jsonschema` validating the same files against the same committed schemas (schema only;
  one process per kind, since it takes one schema per run), the baseline;
- `meshctl validate` (schema + semantic checks);
- `meshctl compile` (validate + compile + write 1,001 sidecar configs).
Prints the median and min of each, and the ratio to the baseline. Targets: validate no slower
than check-jsonschema and under 2 s; compile under 2 s.

`--baseline DIR`: a work tree of an earlier commit with its own `.venv` (`git worktree add
--detach DIR COMMIT && (cd DIR && scripts/setup)`). Its `meshctl validate` and `meshctl compile`
run in the same rounds (alternating which tree goes first), and the table adds CPU time (user +
system of the process: what a loaded machine disturbs least) and, per command, the median over
rounds of this tree's CPU / the baseline's.
"""

from __future__ import annotations

import argparse
import os
import resource
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


def timed(run: Callable[[], None]) -> tuple[float, float]:
    """(wall, CPU) seconds; CPU is user + system of the child processes it ran."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def check(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", type=Path, default=None, help="work tree of an earlier commit")
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

        def meshctl(bin_dir: Path, *cmd: str) -> Callable[[], None]:
            return lambda: check([str(bin_dir / "meshctl"), *cmd], work)

        cases: dict[str, Callable[[], None]] = {
            "check-jsonschema (schema only)": check_jsonschema,
            "meshctl validate (schema + semantic)": meshctl(BIN, "validate", str(policy)),
            "meshctl compile (validate + compile + write)": meshctl(
                BIN, "compile", str(policy), "--out", str(work / "out")),
        }
        if args.baseline is not None:
            base_bin = args.baseline.resolve() / ".venv" / "bin"
            cases["baseline: meshctl validate (schema + semantic)"] = meshctl(
                base_bin, "validate", str(policy))
            cases["baseline: meshctl compile (validate + compile + write)"] = meshctl(
                base_bin, "compile", str(policy), "--out", str(work / "out-baseline"))
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        names = list(cases)
        for n in range(args.runs):  # interleaved, so machine noise hits every case alike
            for name in names if n % 2 == 0 else names[::-1]:
                times[name].append(timed(cases[name]))
    baseline = statistics.median(w for w, _ in times["check-jsonschema (schema only)"])
    print(f"{args.services} services, {documents} documents, {args.runs} runs each, "
          f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| command | median s | min s | vs check-jsonschema | CPU median s |")
    print("| --- | --- | --- | --- | --- |")
    for name, values in times.items():
        median = statistics.median(w for w, _ in values)
        print(f"| {name} | {median:.2f} | {min(w for w, _ in values):.2f} | "
              f"{median / baseline:.2f}x | {statistics.median(c for _, c in values):.2f} |")
    for name in names:
        if f"baseline: {name}" in times:
            ratios = [c / b for (_, c), (_, b) in zip(times[name], times[f"baseline: {name}"], strict=True)]
            print(f"- {name}: CPU this tree / baseline per round {[round(r, 2) for r in ratios]}, "
                  f"median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
