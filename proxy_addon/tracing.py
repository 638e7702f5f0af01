"""Trace context and spans: W3C `traceparent` propagation, OTLP/HTTP export in batches.

Each hop keeps the caller's trace id and sends its own span id downstream, so the next
sidecar's (and the app's) spans nest under this one. A finished request becomes a plain tuple
in a bounded queue (`Spans.record`, ~1 us); a background task encodes batches as OTLP protobuf
(opentelemetry-proto) and POSTs them to `<otlp>/v1/traces`. The request never waits on the
collector: a full queue drops the span and counts it, a slow or dead collector costs one
bounded POST per batch off the request path. Why not the OpenTelemetry SDK: bench/tracing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

logger = logging.getLogger(__name__)

_HEX = frozenset("0123456789abcdef")
MAX_QUEUE = 4096  # spans waiting for export; beyond this new spans are dropped (and counted)
BATCH = 512
EXPORT_EVERY_S = 1.0
EXPORT_TIMEOUT_S = 3.0
SCOPE = InstrumentationScope(name="meshctl-sidecar", version="1")
KIND = {"server": Span.SPAN_KIND_SERVER, "client": Span.SPAN_KIND_CLIENT}

Attr = tuple[str, str | int | float | bool]


def _is_hex(value: str, length: int) -> bool:
    return len(value) == length and set(value) <= _HEX and value != "0" * length


@dataclass(frozen=True, slots=True)
class Context:
    trace_id: str  # 32 hex
    span_id: str  # 16 hex
    sampled: bool


def parse_traceparent(value: str | None) -> Context | None:
    """A valid W3C traceparent (version 00 rules, future versions read the same way)."""
    if not value:
        return None
    parts = value.strip().lower().split("-")
    if (
        len(parts) >= 4
        and len(parts[0]) == 2
        and set(parts[0]) <= _HEX
        and parts[0] != "ff"
        and _is_hex(parts[1], 32)
        and _is_hex(parts[2], 16)
        and len(parts[3]) == 2
        and set(parts[3]) <= _HEX
    ):
        return Context(parts[1], parts[2], bool(int(parts[3], 16) & 1))
    return None


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


def _any(value: str | int | float | bool) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=value)


def encode(spans: Sequence[Recorded], resource: Sequence[Attr]) -> bytes:
    """An OTLP ExportTraceServiceRequest (protobuf) for one resource and scope."""
    out = []
    for kind, name, trace_id, span_id, parent, start, end, error, attrs in spans:
        out.append(Span(
            trace_id=bytes.fromhex(trace_id),
            span_id=bytes.fromhex(span_id),
            parent_span_id=bytes.fromhex(parent) if parent else b"",
            name=name,
            kind=KIND[kind],
            start_time_unix_nano=start,
            end_time_unix_nano=end,
            attributes=[KeyValue(key=k, value=_any(v)) for k, v in attrs],
            status=Status(code=Status.STATUS_CODE_ERROR) if error else Status(),
        ))
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=[KeyValue(key=k, value=_any(v)) for k, v in resource]),
        scope_spans=[ScopeSpans(scope=SCOPE, spans=out)],
    )])
    return request.SerializeToString()


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
