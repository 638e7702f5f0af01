"""A small pooled HTTP/2 client on the `h2` library (already a mitmproxy dependency).

Used for what mitmproxy's own upstream path cannot do: sending a gRPC call again after a
retriable failure, and a call's mirror copy. One multiplexed connection per (address, TLS
identity), shared by every flow of the sidecar; mTLS with ALPN `h2`, or cleartext with prior
knowledge. `request` buffers whole messages (a retry is only attempted for small, complete
requests); `open_stream` sends a request as it comes and drops the answer (a mirror). Flow
control is honoured in both directions.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from proxy_addon.tls import SidecarTls
from proxy_addon.upstream import UpstreamError

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class H2Response:
    status: int
    headers: Headers
    body: bytes
    trailers: Headers


@dataclass(slots=True)
class _Stream:
    done: asyncio.Future[None]
    status: int = 0
    headers: Headers = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: Headers = field(default_factory=list)
    discard: bool = False  # the answer's messages are not kept (a mirror's)


class OutgoingStream:
    """A request sent as it comes (`send` each chunk, then `end`); its answer is dropped."""

    def __init__(self, conn: H2Connection, stream_id: int, stream: _Stream) -> None:
        self.conn, self.stream_id, self.stream = conn, stream_id, stream

    async def send(self, data: bytes) -> None:
        await self.conn.send_body(self.stream_id, data)

    async def end(self) -> int:
        """End the request, wait for the answer; its HTTP status."""
        try:
            self.conn.end_stream(self.stream_id)
            await self.stream.done
        finally:
            self.conn.streams.pop(self.stream_id, None)
        return self.stream.status

    def reset(self) -> None:
        self.conn.streams.pop(self.stream_id, None)
        self.conn.reset(self.stream_id)


class H2Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.ENABLE_PUSH: 0}
        )
        self.conn.initiate_connection()
        self.streams: dict[int, _Stream] = {}
        self.window_open = asyncio.Event()
        self.closed = False
        self._flush()
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    @property
    def usable(self) -> bool:
        return not self.closed and self.conn.open_outbound_streams < self.conn.remote_settings.max_concurrent_streams

    async def request(self, headers: Headers, body: bytes) -> H2Response:
        stream_id = self.conn.get_next_available_stream_id()
        stream = _Stream(asyncio.get_running_loop().create_future())
        self.streams[stream_id] = stream
        try:
            self.conn.send_headers(stream_id, headers, end_stream=not body)
            self._flush()
            if body:
                await self._send_body(stream_id, body, True)
            await self.writer.drain()
            await stream.done
        except (h2.exceptions.ProtocolError, ConnectionError, OSError) as exc:
            self.close()
            raise UpstreamError("reset") from exc
        except asyncio.CancelledError:
            self.reset(stream_id)
            raise
        finally:
            self.streams.pop(stream_id, None)
        return H2Response(stream.status, stream.headers, bytes(stream.body), stream.trailers)

    def open_stream(self, headers: Headers) -> OutgoingStream:
        stream_id = self.conn.get_next_available_stream_id()
        stream = _Stream(asyncio.get_running_loop().create_future(), discard=True)
        self.streams[stream_id] = stream
        try:
            self.conn.send_headers(stream_id, headers, end_stream=False)
        except h2.exceptions.ProtocolError as exc:
            self.streams.pop(stream_id, None)
            raise UpstreamError("reset") from exc
        self._flush()
        return OutgoingStream(self, stream_id, stream)

    def end_stream(self, stream_id: int) -> None:
        try:
            self.conn.end_stream(stream_id)
        except h2.exceptions.ProtocolError as exc:
            raise UpstreamError("reset") from exc
        self._flush()

    async def send_body(self, stream_id: int, body: bytes) -> None:
        """More of an open stream's request (`end_stream` ends it)."""
        try:
            await self._send_body(stream_id, body, False)
        except (h2.exceptions.ProtocolError, ConnectionError, OSError) as exc:
            raise UpstreamError("reset") from exc

    async def _send_body(self, stream_id: int, body: bytes, end: bool) -> None:
        view = memoryview(body)
        while view:
            window = min(self.conn.local_flow_control_window(stream_id),
                         self.conn.max_outbound_frame_size)
            if window <= 0:
                self.window_open.clear()
                await self.window_open.wait()
                if self.closed:
                    raise ConnectionError("connection closed")
                continue
            chunk, view = view[:window], view[window:]
            self.conn.send_data(stream_id, bytes(chunk), end_stream=end and not view)
            self._flush()

    def reset(self, stream_id: int) -> None:
        try:
            self.conn.reset_stream(stream_id)
            self._flush()
        except (h2.exceptions.ProtocolError, KeyError):
            pass

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                for event in self.conn.receive_data(data):
                    self._on_event(event)
                self._flush()
        except (h2.exceptions.ProtocolError, ConnectionError, OSError):
            pass
        finally:
            self.close()

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self.window_open.set()
            return
        if isinstance(event, h2.events.ConnectionTerminated):
            self.closed = True
            return
        stream_id = getattr(event, "stream_id", None)
        stream = self.streams.get(stream_id) if stream_id else None
        if stream is None:
            return
        if isinstance(event, h2.events.ResponseReceived):
            for name, value in event.headers:
                if name == b":status":
                    stream.status = int(value)
                else:
                    stream.headers.append((name, value))
        elif isinstance(event, h2.events.DataReceived):
            if not stream.discard:
                stream.body += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            stream.trailers.extend(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            if not stream.done.done():
                stream.done.set_result(None)
        elif isinstance(event, h2.events.StreamReset):
            if not stream.done.done():
                stream.done.set_exception(UpstreamError("reset"))

    def close(self) -> None:
        if self.closed and not self.streams:
            return
        self.closed = True
        self.window_open.set()
        for stream in self.streams.values():
            if not stream.done.done():
                stream.done.set_exception(UpstreamError("reset"))
        self.writer.close()


class H2Pool:
    """One connection per (address, server name), opened on first use."""

    def __init__(self) -> None:
        self._conns: dict[tuple[str, str | None], H2Connection] = {}
        self._opening: dict[tuple[str, str | None], asyncio.Future[H2Connection]] = {}

    async def _connection(
        self, address: str, context: ssl.SSLContext | None, server_hostname: str | None
    ) -> H2Connection:
        key = (address, server_hostname)
        conn = self._conns.get(key)
        if conn is not None and conn.usable:
            return conn
        pending = self._opening.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[H2Connection] = asyncio.get_running_loop().create_future()
        self._opening[key] = future
        host, _, port = address.rpartition(":")
        try:
            try:
                reader, writer = await asyncio.open_connection(
                    host, int(port), ssl=context, server_hostname=server_hostname if context else None
                )
            except (OSError, ssl.SSLError) as exc:
                raise UpstreamError("connect-failure") from exc
            if context is not None:
                alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
                if alpn != "h2":
                    writer.close()
                    raise UpstreamError("connect-failure")
            conn = H2Connection(reader, writer)
            self._conns[key] = conn
            future.set_result(conn)
            return conn
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, nobody logs it as lost
            raise
        finally:
            self._opening.pop(key, None)

    async def request(
        self,
        address: str,
        headers: Headers,
        body: bytes,
        context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> H2Response:
        conn = await self._connection(address, context, server_hostname)
        return await conn.request(headers, body)

    async def open_stream(
        self,
        address: str,
        headers: Headers,
        context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> OutgoingStream:
        conn = await self._connection(address, context, server_hostname)
        return conn.open_stream(headers)

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


def h2_context(tls: SidecarTls, cache: dict[int, ssl.SSLContext]) -> ssl.SSLContext:
    """The sidecar's mTLS client context offering ALPN h2 (the aiohttp pool's context offers
    none). Built from the same files; rebuilt when the certificates were reloaded."""
    tls.maybe_reload()
    key = id(tls.current)
    found = cache.get(key)
    if found is None:
        cache.clear()
        found = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
        found.minimum_version = ssl.TLSVersion.TLSv1_2
        found.load_cert_chain(tls.files.cert_file, tls.files.key_file)
        found.load_verify_locations(tls.files.ca_file)
        found.set_alpn_protocols(["h2"])
        cache[key] = found
    return found
