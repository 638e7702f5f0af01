"""Canary analysis: is the new version worse than the one it replaces, and how sure are we?

Pure: two `VersionSample`s (the canary's and the baseline's traffic over the same window) and
the `Criteria` give a `Verdict`. Three outcomes, never a silent pass:

- `fail`: an absolute threshold is crossed (success rate, p99), or the canary is significantly
  worse than the baseline: more errors (Fisher's exact test, one-sided: exact for small
  samples, where a z-test's normal approximation is not) or slower (Mann-Whitney U on the
  latencies, one-sided: no assumption on their distribution, which is skewed). Significant
  means p < alpha *and* worse by more than a tolerance, so a 0.1 ms difference over 100,000
  requests does not fail a release.
- `inconclusive`: too few requests in the window to judge (below `min_requests`).
- `pass`: otherwise.

scipy does the tests (imported when first needed: it takes a second to load).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class VersionSample:
    """What one version served in the window: counts from the counters, latencies sampled."""

    version: str
    requests: int
    errors: int  # 5xx answers
    latencies_ms: tuple[float, ...] = ()

    @property
    def success_rate(self) -> float | None:
        return 100.0 * (self.requests - self.errors) / self.requests if self.requests else None

    @property
    def error_rate(self) -> float:
        return 100.0 * self.errors / self.requests if self.requests else 0.0

    def percentile(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q)

    def describe(self) -> str:
        rate = "-" if self.success_rate is None else f"{self.success_rate:.2f}%"
        p50, p99 = self.percentile(0.50), self.percentile(0.99)
        return (
            f"{self.version}: {self.requests} requests, success {rate}, "
            f"p50 {_ms(p50)}, p99 {_ms(p99)}"
        )


@dataclass(frozen=True)
class Criteria:
    min_requests: int = 50  # per version: fewer is inconclusive
    min_success_rate: float | None = 99.0  # percent; None: no absolute threshold
    max_p99_ms: float | None = None
    alpha: float = 0.01  # significance level of the comparisons with the baseline
    latency_tolerance: float = 0.10  # the canary's p50 may be this share slower...
    latency_floor_ms: float = 2.0  # ...and always this much: a fresh version's cold pools cost ~1 ms
    error_tolerance: float = 0.5  # percentage points more errors before the test counts


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    canary: VersionSample
    baseline: VersionSample
    reasons: tuple[str, ...] = ()
    evidence: tuple[str, ...] = field(default=())  # the tests run, with their p-values

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    def summary(self) -> str:
        head = {"pass": "passed", "fail": "failed", "inconclusive": "inconclusive"}[self.outcome]
        lines = [f"analysis {head}" + (f": {'; '.join(self.reasons)}" if self.reasons else "")]
        lines += [f"  {self.canary.describe()}", f"  {self.baseline.describe()}"]
        lines += [f"  {e}" for e in self.evidence]
        return "\n".join(lines)


def analyze(canary: VersionSample, baseline: VersionSample, criteria: Criteria) -> Verdict:
    """Judge the canary against the baseline over the same window."""
    if canary.requests < criteria.min_requests:
        return Verdict(
            "inconclusive", canary, baseline,
            (f"{canary.version} served {canary.requests} requests, "
             f"at least {criteria.min_requests} are needed",),
        )
    reasons: list[str] = []
    evidence: list[str] = []
    rate = canary.success_rate
    if criteria.min_success_rate is not None and rate is not None and rate < criteria.min_success_rate:
        reasons.append(
            f"{canary.version} success rate {rate:.2f}% is under {criteria.min_success_rate:g}%"
        )
    p99 = canary.percentile(0.99)
    if criteria.max_p99_ms is not None and p99 is not None and p99 > criteria.max_p99_ms:
        reasons.append(f"{canary.version} p99 {p99:.1f}ms is over {criteria.max_p99_ms:g}ms")

    comparable = baseline.requests >= criteria.min_requests
    if comparable:
        p_errors = errors_worse_p(canary, baseline)
        evidence.append(
            f"errors {canary.error_rate:.2f}% vs {baseline.error_rate:.2f}%: Fisher's exact test "
            f"p={_p(p_errors)} ({_sure(p_errors)} sure {canary.version} fails more often)"
        )
        if p_errors < criteria.alpha and (
            canary.error_rate - baseline.error_rate > criteria.error_tolerance
        ):
            reasons.append(
                f"{canary.version} fails more often than {baseline.version} "
                f"({canary.error_rate:.2f}% vs {baseline.error_rate:.2f}%, p={_p(p_errors)})"
            )
        c50, b50 = canary.percentile(0.50), baseline.percentile(0.50)
        if c50 is not None and b50 is not None and len(canary.latencies_ms) >= criteria.min_requests \
                and len(baseline.latencies_ms) >= criteria.min_requests:
            p_slow = slower_p(canary.latencies_ms, baseline.latencies_ms)
            evidence.append(
                f"p50 {c50:.2f}ms vs {b50:.2f}ms: Mann-Whitney U p={_p(p_slow)} "
                f"({_sure(p_slow)} sure {canary.version} is slower)"
            )
            allowed = max(b50 * criteria.latency_tolerance, criteria.latency_floor_ms)
            if p_slow < criteria.alpha and c50 - b50 > allowed:
                reasons.append(
                    f"{canary.version} is slower than {baseline.version} "
                    f"(p50 {c50:.2f}ms vs {b50:.2f}ms, +{100 * (c50 / b50 - 1):.0f}%, "
                    f"p={_p(p_slow)})"
                )
    else:
        evidence.append(
            f"no comparison with {baseline.version}: it served {baseline.requests} requests"
        )
    return Verdict("fail" if reasons else "pass", canary, baseline, tuple(reasons), tuple(evidence))


def errors_worse_p(canary: VersionSample, baseline: VersionSample) -> float:
    """One-sided p-value that the canary's error rate is higher than the baseline's."""
    from scipy.stats import fisher_exact

    table = [
        [canary.errors, canary.requests - canary.errors],
        [baseline.errors, baseline.requests - baseline.errors],
    ]
    _, p = fisher_exact(table, alternative="greater")
    return float(p)


def slower_p(canary: Sequence[float], baseline: Sequence[float]) -> float:
    """One-sided p-value that the canary's latencies are stochastically greater."""
    from scipy.stats import mannwhitneyu

    if min(canary) == max(canary) == min(baseline) == max(baseline):
        return 1.0  # all equal: nothing to tell apart (scipy would divide by zero)
    result = mannwhitneyu(canary, baseline, alternative="greater", method="asymptotic")
    return float(result.pvalue)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile by linear interpolation (as numpy's default); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.0001 else "<0.0001"


def _sure(p: float) -> str:
    """How sure the data make us of the alternative, in words a release manager reads."""
    return f"{100 * (1 - p):.2f}%" if p >= 0.0001 else ">99.99%"
