"""Readiness probes: is a port accepting connections, does a URL answer 200."""

from __future__ import annotations

import asyncio
import contextlib
import re


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


_REVISION = re.compile(rb'"revision":\s*"([^"]*)"')


async def fetch_revision(host: str, port: int, timeout: float) -> str | None:
    """The revision in a sidecar's /config, read from the first bytes of the answer only: the
    field comes first, and confirming fifty sidecars should not parse fifty whole configs."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET /config HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
                await writer.drain()
                head = b""
                while len(head) < 8192:
                    chunk = await reader.read(4096)
                    if not chunk:
                        break
                    head += chunk
                    if (match := _REVISION.search(head)) is not None:
                        break
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return None
    if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")) or match is None:
        return None
    return match.group(1).decode()


async def fetch(host: str, port: int, path: str, timeout: float) -> str | None:
    """Body of GET `path` when it answers 200 (no gzip asked, the server closes), else None."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
                await writer.drain()
                raw = await reader.read()
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return None
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
        return None
    return body.decode("utf-8", errors="replace")
