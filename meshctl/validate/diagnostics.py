"""Diagnostics: problems found in the policy, as values, each with a stable rule id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from meshctl.yamlio import Document, Path, Position

Severity = Literal["error", "warning"]

# Rule id -> one-line title. Ids are stable: CI filters and docs/rules.md refer to them.
RULES: dict[str, str] = {
    "MESH001": "YAML syntax error",
    "MESH002": "document is not a mapping",
    "MESH003": "unknown or missing apiVersion",
    "MESH004": "unknown or missing kind",
    "MESH005": "unknown field",
    "MESH006": "missing required field",
    "MESH007": "invalid value",
    "MESH008": "duplicate key",
    "MESH010": "duplicate name",
    "MESH011": "unknown service",
    "MESH012": "backend weights do not sum to 100",
    "MESH013": "unknown version",
    "MESH014": "unknown gateway",
    "MESH015": "unreachable rule",
    "MESH016": "route has no catch-all rule",
    "MESH017": "retry time exceeds the timeout",
    "MESH018": "mirror or redirect loop",
    "MESH019": "more than one Route for a service",
    "MESH020": "port clash",
    "MESH021": "invalid regular expression",
    "MESH022": "version has neither run nor endpoints",
    "MESH023": "more than one Mesh",
    "MESH024": "rule needs exactly one action",
    "MESH025": "weights missing in a split",
    "MESH026": "L7 policy on a tcp service",
    "MESH027": "no policy documents",
    "MESH028": "duplicate backend",
    "MESH029": "conflicting path rewrites",
    "MESH060": "gateway needs exactly one of port or listeners",
    "MESH061": "host claimed by two listeners",
    "MESH062": "file does not exist",
    "MESH063": "JWKS is not a valid key set",
    "MESH064": "endpoint without a port",
    "MESH065": "TLS settings that cannot apply",
    "MESH066": "unknown listener",
    "MESH067": "JWT provider needs one key source",
    "MESH068": "token required without a JWT provider",
    "MESH080": "connection settings that cannot apply",
}


@dataclass(frozen=True, order=True)
class Diagnostic:
    file: str
    line: int
    column: int
    severity: Severity
    rule: str
    path: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "severity": self.severity,
            "rule": self.rule,
            "path": self.path,
            "message": self.message,
        }


def format_path(path: Path) -> str:
    """('spec', 'rules', 0, 'backends') -> 'spec.rules[0].backends'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def at(
    doc: Document,
    path: Path,
    rule: str,
    message: str,
    *,
    severity: Severity = "error",
    key: bool = False,
) -> Diagnostic:
    """A diagnostic positioned at the node (or, with key=True, the mapping key) at `path`."""
    pos = doc.position(path, key=key)
    return Diagnostic(doc.file, pos.line, pos.column, severity, rule, format_path(path), message)


def at_position(
    file: str, pos: Position, rule: str, message: str, *, severity: Severity = "error", path: str = ""
) -> Diagnostic:
    return Diagnostic(file, pos.line, pos.column, severity, rule, path, message)
