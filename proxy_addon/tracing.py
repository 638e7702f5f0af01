"""Trace context and spans: W3C `traceparent` propagation, OTLP/HTTP export in batches.

Each hop keeps the caller's trace id and sends its own span id downstream, so the next
sidecar's (and the app's) spans nest under this one. A finished request becomes a plain tuple
in a bounded queue (`Spans.record`); a background task encodes batches as OTLP protobuf (the
wire format written directly, checked against opentelemetry-proto) and POSTs them to
`<otlp>/v1/traces`. The request never waits on the collector: a full queue drops the span and
counts it, a slow or dead collector costs one bounded POST per batch off the request path.
Why neither the OpenTelemetry SDK nor opentelemetry-proto's message objects: bench/tracing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

logger = logging.getLogger(__name__)

MAX_QUEUE = 4096  # spans waiting for export; beyond this new spans are dropped (and counted)
BATCH = 512
EXPORT_EVERY_S = 1.0
EXPORT_TIMEOUT_S = 3.0

Attr = tuple[str, str | int | float | bool]


@dataclass(frozen=True, slots=True)
class Context:
    trace_id: str  # 32 hex
    span_id: str  # 16 hex
    sampled: bool


# version-traceid-parentid-flags[-anything]: one match instead of a split and four set checks
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?", re.S)
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def parse_traceparent(value: str | None) -> Context | None:
    """A valid W3C traceparent (version 00 rules, future versions read the same way)."""
    if not value:
        return None
    m = _TRACEPARENT.fullmatch(value.strip().lower())
    if m is None:
        return None
    version, trace_id, span_id, flags = m.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return Context(trace_id, span_id, bool(int(flags, 16) & 1))


def next_traceparent(incoming: str | None, sampling: float) -> str:
    """The traceparent to send upstream: same trace id and flags, a new parent (span) id."""
    span = f"{random.getrandbits(64) or 1:016x}"  # ids need uniqueness, not secrecy
    parent = parse_traceparent(incoming)
    if parent is not None:
        return f"00-{parent.trace_id}-{span}-{'01' if parent.sampled else '00'}"
    sampled = "01" if random.random() < sampling else "00"
    return f"00-{random.getrandbits(128) or 1:032x}-{span}-{sampled}"


def new_request_id() -> str:
    """A random UUID (version 4 layout) for x-request-id, as Envoy generates one."""
    n = random.getrandbits(128)
    n = (n & ~(0xF000 << 64)) | (0x4000 << 64)  # version 4
    n = (n & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# kind, name, trace id, span id, parent span id ("" for a root), start ns, end ns, error, attrs
Recorded = tuple[str, str, str, str, str, int, int, bool, Sequence[Attr]]


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _any_value(value: str | int | float | bool) -> bytes:
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")  # bool_value = 2
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int_value = 3
    if isinstance(value, float):
        return b"\x21" + struct.pack("<d", value)  # double_value = 4
    return _field(1, value.encode())  # string_value = 1


_KEY_VALUES: dict[tuple[str, type, object], bytes] = {}
_ATTRIBUTES: dict[tuple[str, type, object], bytes] = {}


def _key_value(key: str, value: str | int | float | bool) -> bytes:
    """An encoded KeyValue; most (key, value) pairs repeat, so they are cached (bounded)."""
    cache_key = (key, type(value), value)
    found = _KEY_VALUES.get(cache_key)
    if found is None:
        found = _field(1, key.encode()) + _field(2, _any_value(value))
        if len(_KEY_VALUES) < 4096:
            _KEY_VALUES[cache_key] = found
    return found


def _attribute(key: str, value: str | int | float | bool) -> bytes:
    """A span's attribute: its KeyValue inside field 9, cached whole like `_key_value`."""
    cache_key = (key, type(value), value)
    found = _ATTRIBUTES.get(cache_key)
    if found is None:
        found = _field(9, _key_value(key, value))
        if len(_ATTRIBUTES) < 4096:
            _ATTRIBUTES[cache_key] = found
    return found


_KIND_FIELD = {"server": b"\x30\x02", "client": b"\x30\x03"}  # kind = 6: SERVER, CLIENT
_STATUS_ERROR = _field(15, b"\x18\x02")  # status = 15 { code = 3: STATUS_CODE_ERROR }
_SCOPE = _field(1, _field(1, b"meshctl-sidecar") + _field(2, b"1"))  # ScopeSpans.scope


def _span(kind: str, name: str, trace_id: str, span_id: str, parent: str, start: int, end: int,
          error: bool, attrs: Sequence[Attr]) -> bytes:
    body = b"".join((
        b"\x0a\x10", bytes.fromhex(trace_id),  # trace_id = 1
        b"\x12\x08", bytes.fromhex(span_id),  # span_id = 2
        b"\x22\x08" + bytes.fromhex(parent) if parent else b"",  # parent_span_id = 4
        _field(5, name.encode()),
        _KIND_FIELD[kind],
        b"\x39", struct.pack("<Q", start),  # start_time_unix_nano = 7 (fixed64)
        b"\x41", struct.pack("<Q", end),  # end_time_unix_nano = 8
        b"".join([_attribute(k, v) for k, v in attrs]),
        _STATUS_ERROR if error else b"",
    ))
    return _field(2, body)  # ScopeSpans.spans = 2


def encode(spans: Sequence[Recorded], resource: Sequence[Attr]) -> bytes:
    """An OTLP ExportTraceServiceRequest (protobuf wire format) for one resource and scope.

    Written field by field rather than through opentelemetry-proto's message objects: 7x less
    CPU per span (bench/tracing); tests decode every export with opentelemetry-proto.
    """
    res = _field(1, b"".join(_field(1, _key_value(k, v)) for k, v in resource))
    scope_spans = _field(2, _SCOPE + b"".join(_span(*s) for s in spans))
    return _field(1, res + scope_spans)


class Spans:
    """The bounded queue and its exporter task. `endpoint` None: nothing is recorded."""

    def __init__(self, on_exported: Callable[[int], None], on_dropped: Callable[[int], None]) -> None:
        self.endpoint: str | None = None
        self.resource: tuple[Attr, ...] = ()
        self._queue: deque[Recorded] = deque()
        self._on_exported, self._on_dropped = on_exported, on_dropped
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        return self.endpoint is not None

    def configure(self, otlp: str | None, resource: tuple[Attr, ...]) -> None:
        self.endpoint = otlp.rstrip("/") + "/v1/traces" if otlp else None
        self.resource = resource

    def record(self, span: Recorded) -> None:
        if len(self._queue) >= MAX_QUEUE:
            self._on_dropped(1)
            return
        self._queue.append(span)
        if len(self._queue) >= BATCH and self._wake is not None:
            self._wake.set()

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="meshctl span export")

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(EXPORT_EVERY_S):
                    await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self.export_once()
                if len(self._queue) < BATCH:
                    break

    async def export_once(self) -> None:
        batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
        endpoint = self.endpoint
        if not batch:
            return
        if endpoint is None:
            self._on_dropped(len(batch))
            return
        body = encode(batch, self.resource)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=EXPORT_TIMEOUT_S),
                connector=aiohttp.TCPConnector(limit=1),
            )
        try:
            async with self._session.post(
                endpoint, data=body, headers={"content-type": "application/x-protobuf"}
            ) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            ok = False
        if ok:
            self._on_exported(len(batch))
        else:
            self._on_dropped(len(batch))

    async def close(self) -> None:
        """Stop the exporter after one last bounded attempt to send what is queued."""
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(EXPORT_TIMEOUT_S):
                while self._queue:
                    await self.export_once()
        if self._session is not None:
            await self._session.close()


def now_ns() -> int:
    return time.time_ns()
