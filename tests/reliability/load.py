"""Steady, bounded open-loop load: requests at a fixed rate from a thread, each one recorded.

Open loop (a request every 1/rps seconds whatever the answers) so a fault shows as failed
requests, not as a slower client. Bounded in count, time and requests in flight.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import aiohttp


@dataclass
class Sample:
    started: float  # time.monotonic()
    status: int  # -1: no answer
    flags: str
    app: str


@dataclass
class SteadyLoad:
    url: str
    proxy: str | None = None
    rps: float = 40.0
    seconds: float = 6.0
    headers: dict[str, str] = field(default_factory=dict)
    max_in_flight: int = 32
    samples: list[Sample] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> SteadyLoad:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        """End the load early (it never runs past `seconds`) and return its samples."""
        self._stop.set()
        return self.join()

    def join(self) -> list[Sample]:
        assert self._thread is not None
        self._thread.join(timeout=self.seconds + 30)
        return sorted(self.samples, key=lambda s: s.started)

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        limit = asyncio.Semaphore(self.max_in_flight)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            tasks = []
            begin = time.monotonic()
            for i in range(int(self.rps * self.seconds)):
                if self._stop.is_set():
                    break
                delay = begin + i / self.rps - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(self._one(session, limit)))
            await asyncio.gather(*tasks)

    async def _one(self, session: aiohttp.ClientSession, limit: asyncio.Semaphore) -> None:
        started = time.monotonic()
        async with limit:
            try:
                async with session.get(self.url, proxy=self.proxy, headers=self.headers) as resp:
                    await resp.read()
                    self.samples.append(Sample(started, resp.status,
                                               resp.headers.get("x-mesh-response-flags", ""),
                                               resp.headers.get("x-app", "")))
            except (aiohttp.ClientError, TimeoutError):
                self.samples.append(Sample(started, -1, "", ""))


def failures(samples: list[Sample], after: float = 0.0, before: float = float("inf")) -> list[Sample]:
    return [s for s in samples if after <= s.started < before and s.status != 200]
