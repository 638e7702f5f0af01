"""Benchmark: `meshctl diff` between two commits of a generated 1,000-service repository.

Usage: python bench/diff/run.py [--services 1000] [--runs 5] [--variant 10] [--baseline DIR]

Builds a git repository in a temp dir with two commits (the second shifts the weights of every
`--variant`-th route, via bench/gen_policy.py), then times `meshctl diff HEAD~1 HEAD` as a whole
process (interpreter start, imports, reading both revisions from git objects, validating and
compiling both, comparing, printing), cold (`--no-cache`) and with the builds of both commits
cached, and `meshctl diff` against the work tree. Prints a markdown table row per case with wall
and CPU time (CPU includes the forked child that compiles the base); the budget is 3 s wall for
the commit-to-commit diff.

`--baseline DIR`: a work tree of an earlier commit with its own `.venv`; each case also runs
that tree's `meshctl diff` in the same rounds (alternating which goes first), and a line per
case gives the median over rounds of this tree's CPU / the baseline's.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from gen_policy import generate  # noqa: E402

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}


def git(repo: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | GIT_ENV
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def make_repo(base: Path, services: int, variant: int) -> Path:
    repo = base / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    generate(repo / "mesh.d", services)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    generate(repo / "mesh.d", services, variant)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "shift weights")
    return repo


def time_diff(
    repo: Path, args: list[str], runs: int, tree: Path = ROOT
) -> tuple[list[float], list[float], str]:
    """Wall seconds and CPU seconds (user + system, child processes included) of each run."""
    python = sys.executable if tree == ROOT else str(tree / ".venv" / "bin" / "python")
    cmd = [python, "-m", "meshctl", "diff", "--dir", "mesh.d", *args]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    walls, cpus, out = [], [], ""
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"meshctl diff failed ({proc.returncode}): {proc.stderr[-2000:]}")
        out = proc.stdout
    return walls, cpus, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--variant", type=int, default=10)
    parser.add_argument("--baseline", type=Path, default=None, help="work tree of an earlier commit")
    parser.add_argument("--case", choices=["cold", "worktree", "cached"], action="append",
                        help="only these cases (default: all three)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp), args.services, args.variant)
        load = os.getloadavg()[0]
        print(f"# {args.services} services, every {args.variant}th route shifted, {args.runs} runs, "
              f"{os.cpu_count()} CPUs, load average {load:.1f} at start", file=sys.stderr)
        print("| case | changes | wall min s | wall median s | CPU median s |")
        print("|---|---|---|---|---|")
        every = {
            "cold": ("HEAD~1 -> HEAD, cold (no cache)", ["--no-cache", "HEAD~1", "HEAD"]),
            "worktree": ("HEAD~1 -> work tree, cold", ["--no-cache", "HEAD~1"]),
            "cached": ("HEAD~1 -> HEAD, cached builds", ["HEAD~1", "HEAD"]),
        }
        cases = [every[name] for name in args.case or every]
        trees = [("", ROOT)] + ([("baseline: ", args.baseline.resolve())] if args.baseline else [])
        notes = []
        for label, extra in cases:
            runs: dict[str, tuple[list[float], list[float]]] = {}
            for n in range(args.runs):  # one run of each tree per round, alternating the order
                for prefix, tree in trees if n % 2 == 0 else trees[::-1]:
                    walls, cpus, out = time_diff(repo, extra, 1, tree)
                    got = runs.setdefault(prefix, ([], []))
                    got[0].extend(walls)
                    got[1].extend(cpus)
            changes = out.strip().splitlines()[-1].split(" (")[0] if out.strip() else "?"
            for prefix, (walls, cpus) in runs.items():
                print(f"| {prefix}{label} | {changes} | {min(walls):.2f} | "
                      f"{statistics.median(walls):.2f} | {statistics.median(cpus):.2f} |", flush=True)
            if "baseline: " in runs:
                ratios = [c / b for c, b in zip(runs[""][1], runs["baseline: "][1], strict=True)]
                notes.append(f"- {label}: CPU this tree / baseline per round "
                             f"{[round(r, 2) for r in ratios]}, median {statistics.median(ratios):.2f}")
        print("\n".join(notes))
        print(f"# load average {os.getloadavg()[0]:.1f} at the end", file=sys.stderr)

if __name__ == "__main__":
    main()
