"""Run a Python module under the corpus budget: CPU time and address space, enforced by the kernel.

The budget of a case is 5 s and 200 MB. RLIMIT_CPU and RLIMIT_AS stop a runaway child (a
billion-laughs expansion is killed, not waited for); the child reports its own peak RSS.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CPU_S = 5
MEMORY_BYTES = 200 * 1024 * 1024
ADDRESS_SPACE_BYTES = 2 * MEMORY_BYTES  # virtual size runs ahead of RSS (thread stacks, arenas)


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_BYTES, ADDRESS_SPACE_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_S, CPU_S + 1))


def run_bounded(args: list[str], cwd: Path, wall_s: float = 120.0) -> Outcome:
    """`python ARGS` in a fresh, limited process. The budget is CPU time (RLIMIT_CPU): wall time
    on a shared CI machine says little, so it only guards against a stuck test."""
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(REPO), "MALLOC_ARENA_MAX": "2"}
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
            preexec_fn=_limit, timeout=wall_s,
        )
    except subprocess.TimeoutExpired as exc:
        return Outcome(-9, str(exc.stdout or ""), f"wall time over {wall_s} s", time.monotonic() - start)
    return Outcome(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
