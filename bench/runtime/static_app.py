"""A minimal app for the runtime benchmarks: answers every request 200 with a small JSON body.

Standard library only (asyncio streams), so starting it costs ~0.05 s of CPU where the shop's
aiohttp apps cost ~0.3 s: with it, `up` measures the mesh's own start-up (supervisor, fork
server, sidecars) rather than the apps' imports. Reads PORT like the shop's apps.
"""

from __future__ import annotations

import asyncio
import os

BODY = b'{"product": {"id": "1", "name": "Espresso cup"}, "served_by": "static"}'
RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
MAX_HEAD = 64 * 1024


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > MAX_HEAD:
                break
            writer.write(RESPONSE)  # GETs only: no request body to read
            await writer.drain()
            if b"\r\nconnection: close" in head.lower():
                break
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(answer, "127.0.0.1", int(os.environ["PORT"]))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
