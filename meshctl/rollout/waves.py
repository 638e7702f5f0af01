"""Splitting the sidecars to update into waves: the canary wave first, then the rest."""

from __future__ import annotations

import math


def canary_size(canary: int | str, total: int) -> int:
    """`canary` is a count (3) or a share ("10%"); at least one sidecar, at most all."""
    if total == 0:
        return 0
    if isinstance(canary, str):
        percent = float(canary.rstrip("%"))
        size = math.ceil(total * percent / 100)
    else:
        size = canary
    return max(1, min(size, total))


def split_waves(items: list[str], canary: int | str) -> list[list[str]]:
    """[[canary...], [rest...]]: one wave when the canary covers everything."""
    size = canary_size(canary, len(items))
    if size == 0:
        return []
    first, rest = items[:size], items[size:]
    return [first, rest] if rest else [first]
