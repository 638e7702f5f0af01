"""One way to wait for a condition: poll it until true or a deadline, sleeping between tries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


def poll(condition: Callable[[], bool], *, timeout: float, every: float = 0.1) -> bool:
    """True as soon as `condition()` is; False once `timeout` seconds passed without it.
    The condition is always tried at least once, and once more at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(every, left))


async def apoll(
    condition: Callable[[], Awaitable[bool]], *, timeout: float, every: float = 0.1
) -> bool:
    """`poll` for a condition that awaits (asks processes over the network)."""
    deadline = time.monotonic() + timeout
    while True:
        if await condition():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(every, left))
