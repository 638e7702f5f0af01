"""Canary analysis on samples made here: the statistical tests decide as they should."""

from __future__ import annotations

import random

from meshctl.promote.analysis import Criteria, VersionSample, analyze, percentile


def latencies(center: float, n: int, seed: int) -> tuple[float, ...]:
    rng = random.Random(seed)
    return tuple(max(0.1, rng.gauss(center, center * 0.15)) for _ in range(n))


def sample(version: str, n: int, errors: int = 0, center: float = 10.0, seed: int = 1
           ) -> VersionSample:
    return VersionSample(version, n, errors, latencies(center, n, seed))


def test_equal_versions_pass() -> None:
    verdict = analyze(sample("v2", 300, seed=2), sample("v1", 300, seed=3), Criteria())
    assert verdict.outcome == "pass", verdict.summary()
    assert "Mann-Whitney" in verdict.summary() and "Fisher" in verdict.summary()


def test_too_little_traffic_is_inconclusive_never_a_pass() -> None:
    verdict = analyze(sample("v2", 0), sample("v1", 400), Criteria(min_requests=50))
    assert verdict.outcome == "inconclusive"
    assert not verdict.passed
    assert "0 requests" in verdict.summary()


def test_absolute_success_rate_fails() -> None:
    verdict = analyze(sample("v2", 200, errors=20), sample("v1", 200, errors=20),
                      Criteria(min_success_rate=99.0))
    assert verdict.outcome == "fail"
    assert "success rate 90.00% is under 99%" in verdict.summary()


def test_more_errors_than_baseline_fails_without_absolute_threshold() -> None:
    verdict = analyze(sample("v2", 400, errors=40), sample("v1", 400, errors=1),
                      Criteria(min_success_rate=None))
    assert verdict.outcome == "fail"
    assert "fails more often than v1" in verdict.summary()


def test_twenty_percent_slower_fails_against_the_baseline() -> None:
    verdict = analyze(sample("v2", 300, center=12.0, seed=4), sample("v1", 300, center=10.0, seed=5),
                      Criteria(min_success_rate=None))
    assert verdict.outcome == "fail", verdict.summary()
    assert "is slower than v1" in verdict.summary()


def test_a_slowdown_within_tolerance_passes_even_when_significant() -> None:
    verdict = analyze(sample("v2", 5000, center=10.3, seed=6), sample("v1", 5000, center=10.0, seed=7),
                      Criteria(min_success_rate=None, latency_tolerance=0.10))
    assert verdict.outcome == "pass", verdict.summary()


def test_small_difference_on_small_samples_is_not_significant() -> None:
    verdict = analyze(sample("v2", 60, errors=2), sample("v1", 60, errors=1),
                      Criteria(min_success_rate=None, min_requests=50))
    assert verdict.outcome == "pass", verdict.summary()


def test_no_comparison_when_the_baseline_had_no_traffic() -> None:
    verdict = analyze(sample("v2", 300), sample("v1", 0), Criteria())
    assert verdict.outcome == "pass"
    assert "no comparison with v1" in verdict.summary()


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([], 0.5) is None


def test_a_significant_but_tiny_slowdown_of_fast_requests_passes() -> None:
    """2.0 ms vs 2.3 ms is +15% and significant, but a fresh version's cold pools cost that."""
    verdict = analyze(sample("v2", 300, center=2.3, seed=8), sample("v1", 1500, center=2.0, seed=9),
                      Criteria(min_success_rate=None))
    assert verdict.outcome == "pass", verdict.summary()
