"""Hypothesis over the real policy files: mutated policies give diagnostics, never a traceback.

Bounded for CI (a fixed number of examples, derandomized); `bench/reliability/fuzz.py` runs
the same property for longer with fresh randomness.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.reliability.policy_fuzz import FILES, check_policy_text, mutated_policy


def test_the_unmutated_example_is_clean() -> None:
    check_policy_text(FILES)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(files=mutated_policy())
def test_mutated_policy_never_raises(files: dict[str, str]) -> None:
    check_policy_text(files)
