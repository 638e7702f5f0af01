"""W3C trace context: keep the caller's trace id, add this hop's span id, or start a trace."""

from __future__ import annotations

import random

_HEX = frozenset("0123456789abcdef")


def _is_hex(value: str, length: int) -> bool:
    return len(value) == length and set(value) <= _HEX and value != "0" * length


def next_traceparent(incoming: str | None, sampling: float) -> str:
    """The traceparent to send upstream: same trace id and flags, a new parent (span) id."""
    span = f"{random.getrandbits(64) or 1:016x}"  # ids need uniqueness, not secrecy
    if incoming:
        parts = incoming.strip().lower().split("-")
        if (
            len(parts) >= 4
            and len(parts[0]) == 2
            and set(parts[0]) <= _HEX
            and parts[0] != "ff"
            and _is_hex(parts[1], 32)
            and _is_hex(parts[2], 16)
            and len(parts[3]) == 2
            and set(parts[3]) <= _HEX
        ):
            return f"00-{parts[1]}-{span}-{parts[3]}"
    sampled = "01" if random.random() < sampling else "00"
    return f"00-{random.getrandbits(128) or 1:032x}-{span}-{sampled}"
