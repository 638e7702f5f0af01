"""Policy regexes (path, header and query matches) compiled and matched with RE2.

One module for `validate`, `explain`, `meshctl test` and the sidecar, so a pattern that
validates is exactly the pattern that runs. RE2 matches in time linear in the input: no pattern
can make a request take exponential time (Python's backtracking `re` froze a sidecar's event loop
for 17 s on `/(a+)+$` and 27 `a`s). RE2 refuses what it cannot do in linear time: possessive
and atomic groups, conditionals, lookaround, backreferences. The library is Google's own
binding (`google-re2`), the engine Envoy uses for `safe_regex`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol

import re2

MAX_PATTERN_CHARS = 1024


class RegexError(ValueError):
    """A pattern RE2 refuses; the message says why in RE2's words."""


class CompiledRegex(Protocol):
    def fullmatch(self, text: str) -> object | None: ...


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern on stderr
    return options


_OPTIONS = _options()


@lru_cache(maxsize=4096)
def compile_regex(pattern: str) -> CompiledRegex:
    """The compiled pattern (cached); RegexError when RE2 refuses it."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise RegexError(f"pattern of {len(pattern)} characters; the limit is {MAX_PATTERN_CHARS}")
    if "\x00" in pattern:
        raise RegexError("pattern contains a NUL character")
    try:
        return re2.compile(pattern, _OPTIONS)  # type: ignore[no-any-return]
    except re2.error as exc:
        reason = exc.args[0] if exc.args else str(exc)
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexError(str(reason)) from None


def regex_problem(pattern: str) -> str | None:
    """Why RE2 refuses `pattern` (for a diagnostic), or None when it compiles."""
    try:
        compile_regex(pattern)
    except RegexError as exc:
        return f"regex {pattern!r} is not valid RE2: {exc}"
    return None


def full_match(pattern: str, value: str) -> bool:
    """Does the whole of `value` match? A refused pattern matches nothing (validate refuses it)."""
    try:
        return compile_regex(pattern).fullmatch(value) is not None
    except RegexError:
        return False


def substitute(pattern: str, replacement: str, value: str) -> str:
    """Every match of `pattern` in `value` replaced (`\\1` names a group), in linear time.

    For rewrites: RE2's replacement syntax, as Envoy's `regex_rewrite`.
    """
    return compile_regex(pattern).sub(replacement, value)  # type: ignore[attr-defined,no-any-return]
