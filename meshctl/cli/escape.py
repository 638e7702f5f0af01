"""Untrusted text made safe for a terminal: no escape sequences, no reordering of what follows.

Policy files, test names, URLs and header values reach the screen through every command. An
ESC can recolour or clear the terminal or retitle the window; a C1 control acts the same on
some terminals; bidi overrides (U+202E...) make a line read differently from what it holds.
Each such character is written as a `\\uXXXX` escape: visible, and inside a JSON string the
same character again, so JSON output keeps its meaning. Newline and tab stay (they are layout).
"""

from __future__ import annotations

_KEEP = {0x09, 0x0A}
_BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_CODES = [c for c in range(0x20) if c not in _KEEP] + [0x7F, *range(0x80, 0xA0), *_BIDI]
_TABLE = {code: f"\\u{code:04x}" for code in _CODES}


def terminal_safe(text: str) -> str:
    return text.translate(_TABLE)
