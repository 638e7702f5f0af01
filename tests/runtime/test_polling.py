"""The one polling helper: true as soon as the condition is, false at the deadline."""

from __future__ import annotations

import asyncio
import time

from meshctl.runtime.polling import apoll, poll


def test_poll_returns_as_soon_as_the_condition_holds_and_gives_up_at_the_deadline() -> None:
    tries = iter([False, False, True])
    assert poll(lambda: next(tries), timeout=5, every=0.01)
    start = time.monotonic()
    assert not poll(lambda: False, timeout=0.2, every=0.05)
    assert 0.2 <= time.monotonic() - start < 1.0


def test_apoll_awaits_the_condition() -> None:
    calls = []

    async def ready() -> bool:
        calls.append(1)
        return len(calls) == 2

    assert asyncio.run(apoll(ready, timeout=5, every=0.01)) and len(calls) == 2
