"""Reporters: a list of changes -> text, markdown (pull-request comments) or JSON (SPEC 7).

Text and markdown are for people: the same change in many sidecars (a Mesh-wide setting, a
default that reaches every route) is one line naming how many sidecars it touches. JSON keeps
one item per sidecar, for tools.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby

from meshctl.diff.items import Change

_MARK = {"added": "+", "removed": "-", "modified": "~"}
SHARED_MIN = 4  # sidecars with the same change before it is shown once for all of them
MARKDOWN_MAX_LINES = 400  # a pull-request comment holds 65,536 characters


@dataclass(frozen=True)
class Line:
    sidecars: tuple[str, ...]
    change: str
    path: str
    summary: str

    @property
    def who(self) -> str:
        if len(self.sidecars) == 1:
            return self.sidecars[0]
        named = ", ".join(self.sidecars[:3])
        more = len(self.sidecars) - 3
        return f"{len(self.sidecars)} sidecars ({named}{f' and {more} more' if more > 0 else ''})"


def lines_for_people(changes: list[Change]) -> list[Line]:
    """Shared changes first (most sidecars first), then each sidecar's own, in sorted order."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for c in changes:
        groups.setdefault((c.change, c.path, c.summary), []).append(c.sidecar)
    shared = {key for key, sidecars in groups.items() if len(set(sidecars)) >= SHARED_MIN}
    lines = [Line(tuple(sorted(set(groups[k]))), *k) for k in shared]
    lines.sort(key=lambda line: (-len(line.sidecars), line.path, line.summary))
    lines += [
        Line((c.sidecar,), c.change, c.path, c.summary) for c in changes if (c.change, c.path, c.summary) not in shared
    ]
    return lines


def _counts(changes: list[Change]) -> str:
    sidecars = len({c.sidecar for c in changes})
    noun = "change" if len(changes) == 1 else "changes"
    return f"{len(changes)} {noun} in {sidecars} sidecar{'s' if sidecars != 1 else ''}"


def text_report(base: str, target: str, changes: list[Change]) -> str:
    """One line per change, `sidecar: summary`, greppable; a count at the end."""
    if not changes:
        return f"no changes between {base} and {target}\n"
    lines = [f"{_MARK[line.change]} {line.who}: {line.summary}" for line in lines_for_people(changes)]
    lines.append(f"{_counts(changes)} ({base} -> {target})")
    return "\n".join(lines) + "\n"


_MD_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_[]|<"})


def _md_escape(text: str) -> str:
    """Literal text in markdown: `/ratings/*` must not start emphasis, `<x>` not become HTML."""
    return text.translate(_MD_SPECIAL)


def markdown_report(base: str, target: str, changes: list[Change]) -> str:
    """A pull-request comment: a heading, then a section per sidecar with its changes."""
    head = f"### meshctl diff `{base}` → `{target}`\n\n"
    if not changes:
        return head + "No changes to any sidecar configuration.\n"
    out = [head, f"**{_counts(changes)}**\n"]
    lines = lines_for_people(changes)
    shown = lines[:MARKDOWN_MAX_LINES]
    for who, group in groupby(shown, key=lambda line: line.who):
        items = list(group)
        title = f"`{who}`" if len(items[0].sidecars) == 1 else who
        out.append(f"\n#### {title}\n\n")
        for line in items:
            out.append(f"- **{line.change}** {_md_escape(line.summary)}")
            if line.path:
                out.append(f" <sub>`{line.path}`</sub>")
            out.append("\n")
    if len(lines) > len(shown):
        out.append(f"\n… and {len(lines) - len(shown)} more; run `meshctl diff` to see them all.\n")
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
