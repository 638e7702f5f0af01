"""The runtime's HTTP probes against real servers on loopback: what counts as an answer, and
every way a process can fail to give one (refused, silent, cut short, not HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from meshctl.runtime.probe import fetch, fetch_running, probe_http

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _raw_server(handle: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def _app_server() -> AsyncIterator[int]:
    async def revision(_: web.Request) -> web.Response:
        return web.json_response({"revision": "r7", "sha256": "ab" * 32})

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"first ", b"second ", b"third"):
            await response.write(part)
        await response.write_eof()
        return response

    async def missing(_: web.Request) -> web.Response:
        return web.Response(status=404, text="no")

    async def moved(_: web.Request) -> web.Response:
        return web.Response(status=302, headers={"location": "/revision"})

    app = web.Application()
    app.router.add_get("/revision", revision)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/missing", missing)
    app.router.add_get("/moved", moved)
    app.router.add_get("/echo", _echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def _echo(request: web.Request) -> web.Response:
    return web.Response(text=f"{request.path_qs} host={request.headers['Host']}")


def test_answers_of_a_real_http_server() -> None:
    async def run() -> None:
        async with _app_server() as port:
            running = await fetch_running("127.0.0.1", port, 5.0)
            assert running is not None and running.revision == "r7" and running.sha256 == "ab" * 32
            assert await fetch("127.0.0.1", port, "/chunked", 5.0) == "first second third"
            assert await fetch("127.0.0.1", port, "/echo?window=5m", 5.0) == \
                f"/echo?window=5m host=127.0.0.1:{port}"
            assert await probe_http(f"http://127.0.0.1:{port}/revision", 5.0)
            assert not await probe_http(f"http://127.0.0.1:{port}/missing", 5.0)
            assert not await probe_http(f"http://127.0.0.1:{port}/moved", 5.0)  # not followed

    asyncio.run(run())


@pytest.mark.parametrize("behaviour", ["silent", "cut-short", "not-http", "closes-at-once"])
def test_a_process_that_does_not_answer_properly_is_not_ready(behaviour: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if behaviour == "silent":
            await asyncio.sleep(5)
        elif behaviour == "cut-short":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        elif behaviour == "not-http":
            writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        writer.close()

    async def run() -> None:
        server, port = await _raw_server(handle)
        async with server:
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await fetch("127.0.0.1", port, "/ready", 0.5) is None
            assert loop.time() - started < 2.0  # the timeout holds, whatever the server does

    asyncio.run(run())


def test_refused_ports_and_urls_it_cannot_ask_are_no() -> None:
    async def run() -> None:
        server, port = await _raw_server(lambda r, w: asyncio.sleep(0))
        server.close()
        await server.wait_closed()  # the port is free again: nothing listens
        assert not await probe_http(f"http://127.0.0.1:{port}/ready", 1.0)
        assert not await probe_http("https://127.0.0.1:1/ready", 1.0)
        assert not await probe_http("not a url", 1.0)

    asyncio.run(run())
