"""Reporters: diagnostics -> text | json | github | sarif (a registry, one function each)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from meshctl import __version__
from meshctl.validate.diagnostics import RULES, Diagnostic


def as_text(diags: Sequence[Diagnostic]) -> str:
    lines = [
        f"{d.file}:{d.line}:{d.column}: {d.severity} {d.rule}: {d.message}"
        + (f" ({d.path})" if d.path else "")
        for d in diags
    ]
    errors = sum(d.severity == "error" for d in diags)
    warnings = len(diags) - errors
    if not diags:
        lines.append("policy is valid")
    else:
        lines.append(f"{errors} error(s), {warnings} warning(s)")
    return "\n".join(lines) + "\n"


def as_json(diags: Sequence[Diagnostic]) -> str:
    valid = not any(d.severity == "error" for d in diags)
    return json.dumps({"valid": valid, "problems": [d.as_dict() for d in diags]}, indent=2) + "\n"


def _escape_github(text: str, *, property_value: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property_value:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def as_github(diags: Sequence[Diagnostic]) -> str:
    """GitHub workflow commands: each problem shows on the pull request's line."""
    lines = []
    for d in diags:
        props = ",".join([
            f"file={_escape_github(d.file, property_value=True)}",
            f"line={d.line}",
            f"col={d.column}",
            f"title={_escape_github(d.rule + ' ' + RULES.get(d.rule, ''), property_value=True)}",
        ])
        message = d.message + (f" ({d.path})" if d.path else "")
        lines.append(f"::{d.severity} {props}::{_escape_github(message)}")
    return "\n".join(lines) + ("\n" if lines else "")


def as_sarif(diags: Sequence[Diagnostic]) -> str:
    used = sorted({d.rule for d in diags})
    sarif = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "meshctl",
                "version": __version__,
                "informationUri": "https://meshctl.dev/docs/rules",
                "rules": [{"id": rule, "shortDescription": {"text": RULES.get(rule, rule)}} for rule in used],
            }},
            "results": [{
                "ruleId": d.rule,
                "level": d.severity,
                "message": {"text": d.message + (f" ({d.path})" if d.path else "")},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": d.file},
                    "region": {"startLine": d.line, "startColumn": d.column},
                }}],
            } for d in diags],
        }],
    }
    return json.dumps(sarif, indent=2) + "\n"


REPORTERS: dict[str, Callable[[Sequence[Diagnostic]], str]] = {
    "text": as_text,
    "json": as_json,
    "github": as_github,
    "sarif": as_sarif,
}
