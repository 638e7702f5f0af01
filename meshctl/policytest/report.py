"""Policy test results -> text, JSON (SPEC section 7: passed, failed, cases) or GitHub annotations."""

from __future__ import annotations

import json

from meshctl.policytest.runner import CaseResult
from meshctl.validate.diagnostics import Diagnostic
from meshctl.validate.report import as_github

FAILED_CASE = "TEST002"


def text_report(results: list[CaseResult]) -> str:
    lines = []
    for r in results:
        where = f"{r.case.file}:{r.case.line}"
        lines.append(f"ok   {r.case.name}" if r.ok else f"FAIL {r.case.name} ({where}): {r.message}")
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results) - failed} passed, {failed} failed")
    return "\n".join(lines) + "\n"


def json_report(results: list[CaseResult], errors: list[dict[str, object]]) -> str:
    doc = {
        "passed": sum(r.ok for r in results),
        "failed": sum(not r.ok for r in results),
        "cases": [r.as_dict() for r in results],
        "errors": errors,
    }
    return json.dumps(doc, indent=2) + "\n"


def failures_as_diagnostics(results: list[CaseResult]) -> list[Diagnostic]:
    """Failed cases as positioned problems, so CI can show them on the test file's lines."""
    return [
        Diagnostic(r.case.file, r.case.line, 1, "error", FAILED_CASE, "", f"{r.case.name}: {r.message}")
        for r in results
        if not r.ok
    ]


def github_report(results: list[CaseResult], problems: list[Diagnostic]) -> str:
    """The text report, plus GitHub workflow commands for test-file problems and failures."""
    return text_report(results) + as_github([*problems, *failures_as_diagnostics(results)])
