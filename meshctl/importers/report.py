"""What an import could not carry over, as values; text and JSON reporters."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from meshctl.validate.diagnostics import Diagnostic, format_path
from meshctl.yamlio import Document, Path


@dataclass(frozen=True, order=True)
class Dropped:
    """One source field not carried over (`dropped`: policy lost) or not policy (`ignored`)."""

    file: str
    line: int
    column: int
    source: str  # "VirtualService reviews"
    field: str  # "spec.http[0].corsPolicy"
    reason: str
    kind: str = "dropped"  # dropped | ignored


@dataclass
class ImportReport:
    dropped: list[Dropped] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    imported: list[str] = field(default_factory=list)  # "VirtualService reviews (file:line)"

    def drop(self, doc: Document, source: str, path: Path, reason: str, *, kind: str = "dropped") -> None:
        pos = doc.position(path, key=True)
        self.dropped.append(Dropped(doc.file, pos.line, pos.column, source, format_path(path), reason, kind))

    @property
    def lost(self) -> list[Dropped]:
        return [d for d in self.dropped if d.kind == "dropped"]


def as_text(report: ImportReport) -> str:
    lines = [f"{e.file}:{e.line}:{e.column}: error {e.rule}: {e.message}" for e in report.errors]
    for d in sorted(report.dropped):
        lines.append(f"{d.file}:{d.line}:{d.column}: {d.kind} {d.source}: {d.field}: {d.reason}")
    lost = len(report.lost)
    ignored = len(report.dropped) - lost
    if not report.errors:
        lines.append(f"imported {len(report.imported)} object(s) into {len(report.written)} file(s); "
                     f"{lost} field(s) dropped, {ignored} ignored (not policy)")
    return "\n".join(lines) + "\n"


def as_json(report: ImportReport) -> str:
    data = {
        "ok": not report.errors,
        "errors": [e.as_dict() for e in report.errors],
        "dropped": [asdict(d) for d in sorted(report.dropped)],
        "imported": report.imported,
        "written": report.written,
    }
    return json.dumps(data, indent=2) + "\n"


REPORTERS = {"text": as_text, "json": as_json}


def positions(items: Sequence[Dropped]) -> list[str]:
    return [f"{d.file}:{d.line}" for d in items]
