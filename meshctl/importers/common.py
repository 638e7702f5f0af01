"""Pieces both importers share: durations, weights out of 100, rule names, a reading context."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meshctl.importers.read import Malformed, Src
from meshctl.importers.report import ImportReport
from meshctl.model.values import format_duration_ms
from meshctl.validate.diagnostics import at
from meshctl.yamlio import Path

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def duration(value: Any, path: Path) -> str:
    """Istio / Gateway API durations ("1.5s", "250ms", "1h") -> meshctl's ("1500ms")."""
    text = str(value) if isinstance(value, str | int) else ""
    parts = re.findall(r"[0-9.]+(?:ms|s|m|h)", text)
    if not parts or "".join(parts) != text:
        raise Malformed(path, f"{value!r} is not a duration like 250ms or 1.5s")
    total = 0.0
    for part in parts:
        m = _DURATION.match(part)
        if m is None:
            raise Malformed(path, f"{value!r} is not a duration like 250ms or 1.5s")
        total += float(m.group(1)) * _UNIT_MS[m.group(2)]
    return format_duration_ms(round(total))


def rescale(weights: list[int]) -> list[int]:
    """Relative weights -> integers summing to 100 (largest remainder; zero stays zero)."""
    total = sum(weights)
    if total <= 0:
        return weights
    exact = [w * 100 / total for w in weights]
    out = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[: 100 - sum(out)]:
        out[i] += 1
    return out


@dataclass
class Reading:
    """The object being converted and where its problems go."""

    src: Src
    report: ImportReport

    def drop(self, path: Path, reason: str, *, kind: str = "dropped") -> None:
        self.report.drop(self.src.doc, self.src.label, path, reason, kind=kind)

    def rest(self, data: dict[str, Any], path: Path, handled: set[str], reasons: dict[str, str] | None = None,
             *, ignored: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        """Report every key of `data` the converter did not carry over."""
        for key in data:
            if key in handled:
                continue
            if key in ignored:
                self.drop((*path, key), "not policy", kind="ignored")
            else:
                self.drop((*path, key), (reasons or {}).get(key, "no meshctl equivalent"))

    def line(self, path: Path) -> str:
        pos = self.src.doc.position(path)
        return f"{self.src.label} {_dotted(path)} ({self.src.doc.file}:{pos.line})"


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def unique_name(base: str, taken: set[str]) -> str:
    name, n = base, 2
    while name in taken:
        suffix = f"-{n}"
        name = base[: 63 - len(suffix)].rstrip("-") + suffix
        n += 1
    taken.add(name)
    return name


def header_ops(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Istio's {set, add, remove} header operations, checked for type."""
    out: dict[str, Any] = {}
    for op in ("set", "add"):
        if op in data:
            values = data[op]
            if not isinstance(values, dict):
                raise Malformed((*path, op), "must be a mapping of header names to values")
            out[op] = {str(k): str(v) for k, v in values.items()}
    if "remove" in data:
        names = data["remove"]
        if not isinstance(names, list):
            raise Malformed((*path, "remove"), "must be a list of header names")
        out["remove"] = [str(n) for n in names]
    return out


def convert_guarded(src: Src, report: ImportReport, step: Callable[[Src, Reading], None]) -> None:
    """Convert one source object; a malformed one is a positioned error, the others go on."""
    try:
        step(src, Reading(src, report))
        report.imported.append(f"{src.label} ({src.where})")
    except Malformed as exc:
        report.errors.append(at(src.doc, exc.path, "IMP003", f"{src.label}: {exc.message}"))
