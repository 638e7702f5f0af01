"""Asking processes over HTTP: readiness, a sidecar's revision, an admin page. One aiohttp client
for all of it; every answer other than 200 (or no answer in time) is "no"."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass


def ask_all[T, A](items: Iterable[T], ask: Callable[[T], Awaitable[A]]) -> list[tuple[T, A]]:
    """`ask` every item at once (50 sidecars: one round trip, not fifty); (item, answer) in
    the items' order."""
    listed = list(items)

    async def every() -> list[A]:
        return list(await asyncio.gather(*(ask(item) for item in listed)))

    return list(zip(listed, asyncio.run(every()), strict=True))


@dataclass(frozen=True)
class Running:
    """What a sidecar's admin /revision says it runs."""

    revision: str
    sha256: str  # of its config, as the manifest spells it


async def probe_tcp(host: str, port: int, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _get(url: str, timeout: float) -> bytes | None:
    """Body of GET `url` when it answers 200, else None. No pooling: probes are one-off, and a
    kept-alive connection would hold a sidecar's admin listener for nothing. aiohttp is
    imported at the first probe: the supervisor starts its processes before it needs one."""
    import aiohttp

    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout),
            connector=aiohttp.TCPConnector(force_close=True),
            auto_decompress=True,
        ) as session, session.get(url, allow_redirects=False) as resp:
            if resp.status != 200:
                return None
            return await resp.read()
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return None


async def probe_http(url: str, timeout: float) -> bool:
    """GET `url` answers 200."""
    return await _get(url, timeout) is not None


async def fetch_running(host: str, port: int, timeout: float) -> Running | None:
    """The revision and config hash a sidecar reports on its admin /revision."""
    body = await _get(f"http://{host}:{port}/revision", timeout)
    if body is None:
        return None
    try:
        raw = json.loads(body)
        return Running(str(raw["revision"]), str(raw["sha256"]))
    except (ValueError, KeyError, TypeError):
        return None


async def fetch_revision(host: str, port: int, timeout: float) -> str | None:
    running = await fetch_running(host, port, timeout)
    return running.revision if running else None


async def fetch(host: str, port: int, path: str, timeout: float) -> str | None:
    """Body of GET `path` when it answers 200, else None."""
    body = await _get(f"http://{host}:{port}{path}", timeout)
    return None if body is None else body.decode("utf-8", errors="replace")
