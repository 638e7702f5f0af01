"""Policy test results -> text or JSON (SPEC section 7: passed, failed, cases)."""

from __future__ import annotations

import json

from meshctl.policytest.runner import CaseResult


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
