"""Longer fuzz runs than CI's: mutated policies in process, for a given time.

Usage: .venv/bin/python -m bench.reliability.fuzz [SECONDS]   (default 300)
Prints the number of policies tried and any failing example (exit 1), or "0 tracebacks".
"""

from __future__ import annotations

import sys
import time
import traceback

from hypothesis import HealthCheck, given, settings

from tests.reliability.policy_fuzz import check_policy_text, mutated_policy


def main(seconds: float) -> int:
    deadline = time.monotonic() + seconds
    tried = 0

    @settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(files=mutated_policy())
    def batch(files: dict[str, str]) -> None:
        nonlocal tried
        tried += 1
        check_policy_text(files)

    while time.monotonic() < deadline:  # batches of 50, each with fresh randomness
        try:
            batch()
        except Exception:
            traceback.print_exc()
            print(f"{tried} policies tried; a traceback (above, with the shrunk example)")
            return 1
    print(f"{tried} policies tried in {seconds:.0f} s: 0 tracebacks")
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 300.0))
