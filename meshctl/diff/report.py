"""Reporters: a list of changes -> text, markdown (pull-request comments) or JSON (SPEC 7)."""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import groupby

from meshctl.diff.engine import Change

_MARK = {"added": "+", "removed": "-", "modified": "~"}


def _counts(changes: list[Change]) -> str:
    sidecars = len({c.sidecar for c in changes})
    noun = "change" if len(changes) == 1 else "changes"
    return f"{len(changes)} {noun} in {sidecars} sidecar{'s' if sidecars != 1 else ''}"


def text_report(base: str, target: str, changes: list[Change]) -> str:
    """One line per change, `sidecar: summary`, greppable; a count at the end."""
    if not changes:
        return f"no changes between {base} and {target}\n"
    lines = [f"{_MARK[c.change]} {c.sidecar}: {c.summary}" for c in changes]
    lines.append(f"{_counts(changes)} ({base} -> {target})")
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


def markdown_report(base: str, target: str, changes: list[Change]) -> str:
    """A pull-request comment: a heading, then a section per sidecar with its changes."""
    head = f"### meshctl diff `{base}` → `{target}`\n\n"
    if not changes:
        return head + "No changes to any sidecar configuration.\n"
    out = [head, f"**{_counts(changes)}**\n"]
    for sidecar, group in groupby(changes, key=lambda c: c.sidecar):
        out.append(f"\n#### `{sidecar}`\n\n")
        for change in group:
            out.append(f"- **{change.change}** {_md_escape(change.summary)}")
            if change.path:
                out.append(f" <sub>`{change.path}`</sub>")
            out.append("\n")
    return "".join(out)


def json_report(base: str, target: str, changes: list[Change]) -> str:
    """The stable `--format json` document (SPEC section 7)."""
    doc = {"base": base, "target": target, "changes": [c.as_dict() for c in changes]}
    return json.dumps(doc, indent=2) + "\n"


REPORTERS: dict[str, Callable[[str, str, list[Change]], str]] = {
    "text": text_report,
    "markdown": markdown_report,
    "json": json_report,
}
