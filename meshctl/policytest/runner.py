"""Run policy test cases through `meshctl.explain` and say which expectation failed, and why."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshctl.contract import SidecarConfig
from meshctl.diff import words
from meshctl.explain import ExplainError, Explanation, Question, backend_name, explain
from meshctl.policytest.cases import UNSET, Case, Expect

SPLIT_TOLERANCE = 0.01  # percentage points


@dataclass(frozen=True)
class CaseResult:
    case: Case
    ok: bool
    message: str

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.case.name,
            "ok": self.ok,
            "message": self.message,
            "file": self.case.file,
            "line": self.case.line,
        }


def run_cases(configs: Mapping[str, SidecarConfig], cases: list[Case]) -> list[CaseResult]:
    return [run_case(configs, case) for case in cases]


def run_case(configs: Mapping[str, SidecarConfig], case: Case) -> CaseResult:
    try:
        got = explain(configs, Question(case.source, case.method, case.url, case.headers))
    except ExplainError as exc:
        return CaseResult(case, False, f"request cannot be explained: {exc}")
    failures = check(case.expect, got)
    if failures:
        return CaseResult(case, False, "; ".join(failures))
    return CaseResult(case, True, "ok")


def _status(got: Explanation) -> str:
    if got.status is None:
        return "forwarded (null)"
    return f"{got.status}" + (f" [{','.join(got.flags)}]" if got.flags else "")


def _split_text(split: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in split.items()) or "nothing"


def _backend_matches(expected: str, name: str, service: str, version: str | None) -> bool:
    if "/" in expected:
        return expected == name
    return expected == service if version is None else expected in (service, version)


def check(expect: Expect, got: Explanation) -> list[str]:
    """One sentence per unmet expectation: what was expected, what happened, and why."""
    failures = []
    if expect.destination is not UNSET and expect.destination != got.destination:
        failures.append(f"expected destination {expect.destination}, got {got.destination}")
    if expect.rule is not UNSET and expect.rule != got.rule:
        why = f" (matched {got.matched})" if got.rule else ""
        failures.append(f"expected rule {expect.rule!r}, got {got.rule!r}{why}")
    if expect.status is not UNSET and expect.status != got.status:
        wanted = "forwarded (null)" if expect.status is None else str(expect.status)
        why = f" ({got.notes[0]})" if got.notes else ""
        failures.append(f"expected status {wanted}, got {_status(got)}{why}")
    if expect.flags is not UNSET and list(expect.flags) != got.flags:
        failures.append(f"expected flags {expect.flags}, got {got.flags}")
    if expect.access is not UNSET and expect.access != got.access:
        failures.append(f"expected access {expect.access}, got {got.access} ({got.access_reason})")
    if expect.backend is not UNSET:
        chosen = got.backend
        if chosen is None or not _backend_matches(expect.backend, backend_name(chosen), chosen.service, chosen.version):
            if chosen is not None:
                detail = backend_name(chosen)
            elif got.backends:
                reason = "no sticky key in the request" if got.sticky else "no sticky rule"
                detail = "a split " + _split_text({backend_name(b): p * 100 for b, p in got.backends}) + f" ({reason})"
            else:
                detail = f"no backend (status {_status(got)})"
            failures.append(f"expected backend {expect.backend}, got {detail}")
    if expect.split is not UNSET:
        have = {backend_name(b): p * 100 for b, p in got.backends}
        want = {str(k): float(v) for k, v in expect.split.items()}
        if set(have) != set(want) or any(abs(have[k] - want[k]) > SPLIT_TOLERANCE for k in want):
            failures.append(f"expected split {_split_text(want)}, got {_split_text(have)}")
    rule = got.rule_obj
    if expect.timeout_ms is not UNSET:
        have_ms = rule.timeout_ms if rule else None
        if have_ms != expect.timeout_ms:
            failures.append(f"expected timeout {words.duration(expect.timeout_ms)}, got {words.duration(have_ms)}")
    if expect.retries is not UNSET:
        attempts = rule.retries.attempts if rule else 0
        if attempts != expect.retries:
            failures.append(f"expected retries {expect.retries}, got {attempts}")
    if expect.location is not UNSET and expect.location != got.location:
        failures.append(f"expected location {expect.location}, got {got.location}")
    if expect.upstream is not UNSET and expect.upstream != got.upstream_target:
        what = got.upstream_target or f"nothing forwarded (status {_status(got)})"
        failures.append(f"expected upstream path {expect.upstream}, got {what}")
    return failures
