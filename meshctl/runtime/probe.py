"""Readiness probes: is a port accepting connections, does a URL answer 200."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error
import urllib.request


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


async def probe_http(url: str, timeout: float) -> bool:
    """GET `url` answers 200. A bare HTTP/1.0 request: no client library for a probe."""
    rest = url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, int(port or 80))
            try:
                writer.write(f"GET /{path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n".encode())
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError, ValueError):
        return False
    parts = status_line.split()
    return len(parts) >= 2 and parts[1] == b"200"


def get_text(url: str, timeout: float = 2.0) -> str | None:
    """Blocking GET for the CLI: body text on 200, None on any failure."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (127.0.0.1 only)
            body: bytes = resp.read()
            return body.decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None
