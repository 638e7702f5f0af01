"""An HTTP/2 server (cleartext, prior knowledge) that never processes a stream: for tests.

    PORT=... MODE=refuse|goaway python -m tests.grpc_mesh.refuser

- refuse: every request stream is reset with REFUSED_STREAM (what an overloaded server, or one
  over its SETTINGS_MAX_CONCURRENT_STREAMS, sends).
- goaway: the first request of a connection gets a GOAWAY whose last-stream-id is below it
  (a server shutting down), then the connection is closed.
Each refused stream is written as a line `refused <stream id>` to stdout.
"""

from __future__ import annotations

import asyncio
import os
import sys

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mode: str) -> None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    try:
        while data := await reader.read(65536):
            closing = False
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    print(f"refused {event.stream_id}", flush=True)
                    if mode == "goaway":
                        conn.close_connection(h2.errors.ErrorCodes.NO_ERROR, last_stream_id=max(event.stream_id - 2, 0))
                        closing = True
                        break
                    conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            writer.write(conn.data_to_send())
            await writer.drain()
            if closing:  # read on until the client closes: closing now could reset the GOAWAY away
                async with asyncio.timeout(5):
                    while await reader.read(65536):
                        pass
                break
    except (TimeoutError, ConnectionError, h2.exceptions.ProtocolError):
        pass
    finally:
        writer.close()


async def main() -> None:
    mode = os.environ.get("MODE", "refuse")
    server = await asyncio.start_server(lambda r, w: handle(r, w, mode), "127.0.0.1", int(os.environ["PORT"]))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
