"""gRPC calls through the sidecar: per-call policy on mitmproxy's own HTTP/2 path.

A gRPC call is an HTTP/2 stream (`content-type: application/grpc`); the proxy cannot tell a
unary call from a streaming one, so every call is relayed as a stream, both ways, frames as
they come, trailers included (mitmproxy's streaming path). Policy is applied per call in
`requestheaders`, as Envoy does per stream:

- routing by path (`/pkg.Service/Method`) and headers, weighted and sticky splits: each call
  picks its backend and endpoint, so one client connection spreads its calls
  (mitmproxy keeps one multiplexed upstream connection per endpoint for it);
- faults: the delay (cut short by the call's deadline: DEADLINE_EXCEEDED), then the abort,
  with `grpcStatus` or the HTTP status's gRPC equivalent;
- the deadline: the caller's `grpc-timeout`, capped by the route timeout, is what the next hop
  receives as `grpc-timeout`;
- circuit breaker, outlier detection (UNAVAILABLE counts as a failure, as a 5xx).

Retries, as Envoy's: a call is sent again only when the answer is a trailers-only failure
(status in the headers, no message sent yet) whose status is in the rule's `retries.on`, and
the request was small (<= 64 KiB) and complete. The request body is copied while it streams;
such an answer is held (not streamed) so the `response` hook can replace it with the retry's,
made by the pooled h2 client (`h2client.py`) on another endpoint.

A call's first attempt rides mitmproxy's own upstream connection, which cannot be replayed
once it failed: so before a call goes to an endpoint this client connection has no live
upstream connection to (`Upstreams`), the sidecar opens a TCP connection to it first. A refused
or timed-out connect marks the endpoint failed (outlier detection) and the call goes to
another endpoint, for every method, as for HTTP: it never reached an upstream.

Errors the sidecar makes itself are gRPC errors: HTTP 200, `grpc-status`, `grpc-message`, and
the `x-mesh-response-flags` header.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mitmproxy import http

from meshctl.contract import (
    CompiledMirror,
    CompiledRouteRule,
    CompiledTrafficPolicy,
    Destination,
)
from meshctl.decision import Decision, decide
from meshctl.decision.decide import MAX_RETRY_BODY  # as for HTTP: larger requests are not kept
from meshctl.decision.headers import apply_header_ops
from proxy_addon import grpcwire, h2c
from proxy_addon.endpoints import Endpoint
from proxy_addon.flowinfo import (
    INTERNAL_HEADERS,
    SOURCE_VERSION_HEADER,
    SOURCE_WORKLOAD_HEADER,
    XFCC_HEADER,
    FlowInfo,
)
from proxy_addon.gateway import gateway_decision
from proxy_addon.h2client import H2Response, OutgoingStream, h2_context
from proxy_addon.inbound import admission, client_cert_header
from proxy_addon.limits import Overflow
from proxy_addon.outbound import choose_backend, lb_hash_key, outbound_request
from proxy_addon.responses import FLAG_HEADER
from proxy_addon.retry import backoff_ms, unreached_flags
from proxy_addon.runtime import SidecarRuntime
from proxy_addon.state import DestinationState
from proxy_addon.tracing import next_traceparent
from proxy_addon.upstream import UpstreamError

CONNECT_PROBE_S = 1.0  # a loopback or LAN connect answers far sooner

_FLAG_TEXT = {
    "NR": "no route", "UF": "upstream connect failure", "UH": "no healthy upstream",
    "UO": "upstream overflow (circuit breaker)", "URX": "upstream retries exhausted",
    "UT": "upstream request timeout", "UC": "upstream connection reset", "FI": "fault injected",
    "RL": "rate limited", "RBAC": "access denied", "DC": "proxy draining",
}


def error_response(code: int, flags: list[str], message: str | None = None) -> http.Response:
    """A trailers-only gRPC answer made by the sidecar."""
    flag_text = ",".join(flags)
    text = message or _FLAG_TEXT.get(flags[-1] if flags else "", "sidecar error")
    headers = {
        "content-type": grpcwire.CONTENT_TYPE,
        "grpc-status": str(code),
        "grpc-message": grpcwire.encode_message(text),
        FLAG_HEADER: flag_text,
    }
    return http.Response.make(200, b"", headers)


def as_grpc_error(response: http.Response, flags: list[str]) -> http.Response:
    """A sidecar's flagged HTTP answer (`responses.flag_response`) in gRPC's terms."""
    if "grpc-status" in response.headers:
        return response
    return error_response(grpcwire.status_for_http(response.status_code, flags), flags)


@dataclass(slots=True)
class BodyCopy:
    """mitmproxy's `request.stream` callable: passes chunks on, keeps a copy for a retry, and
    hands every chunk to the call's mirror as it passes (b"" at the end)."""

    data: bytearray = field(default_factory=bytearray)
    complete: bool = False
    too_big: bool = False
    mirror: StreamMirror | None = None

    def __call__(self, chunk: bytes) -> bytes:
        if self.mirror is not None:
            self.mirror.feed(chunk)
        if not chunk:
            self.complete = True
        elif not self.too_big:
            if len(self.data) + len(chunk) > MAX_RETRY_BODY:
                self.too_big = True
                self.data.clear()
            else:
                self.data += chunk
        return chunk

    def body(self) -> bytes | None:
        return bytes(self.data) if self.complete and not self.too_big else None


@dataclass(slots=True)
class GrpcCall:
    """What the response side of an outbound call needs from its request side."""

    rule: CompiledRouteRule
    service: str
    version: str | None
    policy: CompiledTrafficPolicy
    state: DestinationState
    candidates: tuple[Endpoint, ...]
    endpoint: Endpoint
    deadline: float | None  # time.monotonic() seconds
    headers: list[tuple[bytes, bytes]]  # what went upstream, for a retry
    copy: BodyCopy
    authority: str
    path: str
    unreached: int = 0  # retries after a try that never reached an app (every call gets them)
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.endpoint.active -= 1
            self.state.gate.release()
            if self.copy.mirror is not None and not self.copy.complete:
                self.copy.mirror.cancel()  # the call ended before its request did


GRPC_KEY = "meshctl.grpc"


class Upstreams:
    """Which upstream addresses mitmproxy holds a live connection to, per client connection
    (fed by the `server_connected` / `server_disconnected` hooks)."""

    def __init__(self) -> None:
        self._live: dict[str, set[str]] = {}

    def connected(self, client_id: str, address: str) -> None:
        self._live.setdefault(client_id, set()).add(address)

    def disconnected(self, client_id: str, address: str) -> None:
        live = self._live.get(client_id)
        if live is not None:
            live.discard(address)
            if not live:
                del self._live[client_id]

    def has(self, client_id: str, address: str) -> bool:
        return address in self._live.get(client_id, ())


async def reachable(address: str, timeout: float) -> bool:
    host, _, port = address.rpartition(":")
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, int(port))
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def never_reached(status: int | None, flags: str | None) -> bool:
    """A far sidecar's UNAVAILABLE flagged UF/UH: its app never saw the call."""
    return status == grpcwire.UNAVAILABLE and unreached_flags(flags)


def _point_at(flow: http.HTTPFlow, address: str, scheme: str) -> None:
    host, _, port = address.rpartition(":")
    flow.request.scheme = scheme
    flow.request.host = host
    flow.request.port = int(port)


def _strip_internal(request: http.Request) -> None:
    for name in INTERNAL_HEADERS:
        request.headers.pop(name, None)


# --- outbound ----------------------------------------------------------------------------------


async def outbound_call(
    rt: SidecarRuntime, flow: http.HTTPFlow, info: FlowInfo, dest: Destination,
    upstreams: Upstreams | None = None,
) -> None:
    """`requestheaders` of a gRPC call to a mesh service: decide it, then let it stream."""
    info.protocol = "grpc"
    decision = decide(info.snapshot.config, outbound_request(flow.request, info))
    info.service = decision.service or dest.service
    info.rule = decision.rule_name
    if decision.answer is not None:  # no rule matched (NR), or a redirect / direct response
        answer = decision.answer
        info.flags.extend(answer.flags)
        code = grpcwire.status_for_http(answer.status, answer.flags)
        flow.response = error_response(code, info.flags, None if answer.flags else "answered by the route")
        return
    await _forward(rt, flow, info, decision, upstreams)


async def gateway_call(
    rt: SidecarRuntime, flow: http.HTTPFlow, info: FlowInfo, upstreams: Upstreams | None = None
) -> None:
    """`requestheaders` of a gRPC call on a gateway listener: the gateway's edge steps and
    Decision (listener, token, rate limit, gateway rule, then the service's route), then the
    call streams as an outbound one does."""
    info.protocol = "grpc"
    decided = await gateway_decision(rt, flow, info)
    if isinstance(decided, http.Response):
        flow.response = as_grpc_error(decided, info.flags)
        return
    decision, _ = decided
    info.service = decision.service or info.service
    info.rule = decision.rule_name
    await _forward(rt, flow, info, decision, upstreams)


async def _forward(
    rt: SidecarRuntime, flow: http.HTTPFlow, info: FlowInfo, decision: Decision,
    upstreams: Upstreams | None,
) -> None:
    rule, view = decision.rule, decision.view
    assert rule is not None and view is not None and decision.destination is not None
    started = time.monotonic()
    budget = grpcwire.deadline_s(rule.timeout_ms, info.headers.get("grpc-timeout"))
    deadline = started + budget if budget is not None else None
    fault = rule.fault
    if fault is not None and fault.delay is not None:
        if random.random() * 100.0 < fault.delay.percent:
            info.flags.append("DI")
            delay = fault.delay.fixed_ms / 1000.0
            if budget is not None and delay >= budget:
                await asyncio.sleep(budget)
                info.flags.append("UT")
                flow.response = error_response(grpcwire.DEADLINE_EXCEEDED, info.flags)
                return
            await asyncio.sleep(delay)
    if fault is not None and fault.abort is not None:
        if random.random() * 100.0 < fault.abort.percent:
            info.flags.append("FI")
            grpc_status = fault.abort.grpc_status
            code = grpcwire.status_for_http(fault.abort.status) if grpc_status is None else grpc_status
            flow.response = error_response(code, info.flags)
            return
    backend = choose_backend(decision, info)
    info.service = backend.service
    target_dest = info.snapshot.destination(backend.service) or decision.destination
    policy = target_dest.traffic_policy
    state = rt.state.dest_state(backend.service)
    candidates = info.snapshot.endpoints_for(backend.service, backend.version)
    key = lb_hash_key(policy, view)
    ep = state.endpoints.pick(candidates, policy.load_balancer, time.monotonic(), set(), key)
    if ep is None:
        info.flags.append("UH")
        flow.response = error_response(grpcwire.UNAVAILABLE, info.flags)
        return
    unreached = decision.unreached_retries  # refused connects, streams, a far sidecar's UF/UH
    if upstreams is not None:
        tries = 1 + unreached
        avoid: set[str] = set()
        while not upstreams.has(flow.client_conn.id, ep.address):
            left = deadline - time.monotonic() if deadline is not None else CONNECT_PROBE_S
            if left <= 0:
                info.flags.append("UT")
                flow.response = error_response(grpcwire.DEADLINE_EXCEEDED, info.flags)
                return
            if await reachable(ep.address, min(CONNECT_PROBE_S, left)):
                break
            if state.endpoints.record(ep, True, time.monotonic(), policy.outlier_detection):
                rt.metrics.ejections.labels(state.service).inc()
            avoid.add(ep.address)
            tries -= 1
            if tries > 0:
                rt.metrics.retries.labels(state.service).inc()
                ep = state.endpoints.pick(candidates, policy.load_balancer, time.monotonic(), avoid, key)
            if tries <= 0 or ep is None:
                info.flags.append("UF")
                flow.response = error_response(grpcwire.UNAVAILABLE, info.flags)
                return
            info.attempts += 1
    try:
        await state.gate.acquire()
    except Overflow:
        info.flags.append("UO")
        flow.response = error_response(grpcwire.UNAVAILABLE, info.flags)
        return
    ep.active += 1
    info.endpoint, info.version, info.native = ep.address, ep.version, True
    info.attempts = max(info.attempts, 1)
    request = flow.request
    _strip_internal(request)
    request.path = decision.upstream_target or request.path
    request.authority = decision.upstream_host or backend.service
    apply_header_ops(request.headers, rule.request_headers)
    info.traceparent = next_traceparent(
        info.headers.get("traceparent"), info.snapshot.config.telemetry.tracing_sampling
    )
    request.headers["traceparent"] = info.traceparent
    request.headers[SOURCE_WORKLOAD_HEADER] = info.source_workload
    request.headers[SOURCE_VERSION_HEADER] = info.source_version
    # The first attempt cannot be cut by the sidecar (mitmproxy relays it): `perTryTimeout`
    # reaches it as a shorter `grpc-timeout`, which the server enforces (DEADLINE_EXCEEDED,
    # retried when `retries.on` has `deadline-exceeded`).
    limits = [deadline - time.monotonic()] if deadline is not None else []
    if rule.retries.per_try_timeout_ms:
        limits.append(rule.retries.per_try_timeout_ms / 1000.0)
    if limits:
        request.headers["grpc-timeout"] = grpcwire.format_timeout(max(min(limits), 0.001))
    scheme = "http"
    if rt.tls is not None and rt.peer_tls(info.snapshot, backend.service, ep.address):
        scheme = "https"
        rt.tls.expect(flow.client_conn.id, ep.address, target_dest.identity)
    _point_at(flow, ep.address, scheme)
    copy = BodyCopy()
    headers = list(request.headers.fields)
    mirror = rule.mirror
    if mirror is not None and random.random() * 100.0 < mirror.percent:
        copy.mirror = _mirror(rt, info, mirror, headers, request.path)
    request.stream = copy
    flow.metadata[GRPC_KEY] = GrpcCall(
        rule, backend.service, backend.version, policy, state, candidates, ep, deadline,
        headers, copy, request.authority, request.path, unreached,
    )


MIRROR_TIMEOUT_S = 5.0  # for the mirror's answer, once the call's request has ended
MIRROR_BUFFER = 1024 * 1024  # request bytes not yet sent to a slow mirror: past this it is dropped


class StreamMirror:
    """A copy of one call, streamed to the mirror version as the call's request streams, as
    Envoy's shadow does (since 1.33, `streaming_shadow`): each message goes on as it passes,
    so client- and bidirectional-streaming calls and requests of any size are mirrored. Its
    answer is dropped and it never holds up the call: chunks wait in a queue that a
    background task sends; a mirror that falls MIRROR_BUFFER behind is reset and forgotten,
    as is one whose call ends (or fails) before its request did."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.queued = 0
        self.dropped = False

    def feed(self, chunk: bytes) -> None:
        if self.dropped:
            return
        if chunk and self.queued + len(chunk) > MIRROR_BUFFER:
            self.cancel()
            return
        self.queued += len(chunk)
        self.queue.put_nowait(chunk)

    def cancel(self) -> None:
        if not self.dropped:
            self.dropped = True
            self.queue.put_nowait(None)

    async def run(self, open_stream: Callable[[], Awaitable[OutgoingStream]]) -> None:
        stream: OutgoingStream | None = None
        try:
            stream = await open_stream()
            while (chunk := await self.queue.get()) is not None:
                if not chunk:  # the call's request ended
                    async with asyncio.timeout(MIRROR_TIMEOUT_S):
                        await stream.end()
                    stream = None
                    return
                self.queued -= len(chunk)
                await stream.send(chunk)
        except (UpstreamError, TimeoutError):
            pass  # a mirror's fate never reaches the caller
        finally:
            self.dropped = True
            if stream is not None:
                stream.reset()


def _mirror(
    rt: SidecarRuntime, info: FlowInfo, mirror: CompiledMirror,
    headers: list[tuple[bytes, bytes]], path: str,
) -> StreamMirror | None:
    """The call's mirror (`StreamMirror`) to an endpoint of the mirror version, authority
    `service-shadow` as for HTTP; None when it has no healthy endpoint or too many mirrors
    are in flight."""
    address = rt.mirror_endpoint(info, mirror.service, mirror.version)
    if address is None:
        return None
    context = server_hostname = None
    scheme = b"http"
    peer = rt.peer_tls(info.snapshot, mirror.service, address)
    if peer is not None and rt.tls is not None:
        context, server_hostname, scheme = h2_context(rt.tls, rt.h2_contexts), peer.server_hostname, b"https"
    request = [
        (b":method", b"POST"), (b":scheme", scheme),
        (b":authority", f"{mirror.service}-shadow".encode()), (b":path", path.encode()),
        *((k, v) for k, v in headers if k.lower() != b"host"),
    ]
    copy = StreamMirror()
    if not rt.run_mirror(copy.run(lambda: rt.h2.open_stream(address, request, context, server_hostname))):
        return None
    return copy


def _status_of(response: http.Response) -> int | None:
    """The call's gRPC status: trailers, or the headers of a trailers-only answer."""
    found = response.trailers.get("grpc-status") if response.trailers else None
    if found is None:
        found = response.headers.get("grpc-status")
    return grpcwire.parse_status(found)


def response_headers(flow: http.HTTPFlow, info: FlowInfo) -> None:
    """Stream every answer, except a trailers-only failure the rule may retry."""
    assert flow.response is not None
    call: GrpcCall | None = flow.metadata.get(GRPC_KEY)
    status = grpcwire.parse_status(flow.response.headers.get("grpc-status"))
    if call is not None and status is not None and _may_retry(call, status, flow.response):
        return  # held: `response` decides
    flow.response.stream = True


def _may_retry(call: GrpcCall, status: int, response: http.Response) -> bool:
    retries = call.rule.retries
    if call.unreached and never_reached(status, response.headers.get(FLAG_HEADER)):
        return True
    return retries.attempts > 0 and grpcwire.retriable(retries.on, status)


def _record(rt: SidecarRuntime, call: GrpcCall, ep: Endpoint, failed: bool) -> None:
    od = call.policy.outlier_detection
    if call.state.endpoints.record(ep, failed, time.monotonic(), od):
        rt.metrics.ejections.labels(call.state.service).inc()


async def outbound_response(rt: SidecarRuntime, flow: http.HTTPFlow, info: FlowInfo) -> None:
    """`response` of an outbound call: outlier bookkeeping, retries of held failures."""
    call: GrpcCall | None = flow.metadata.pop(GRPC_KEY, None)
    if call is None or flow.response is None:
        return
    try:
        status = _status_of(flow.response)
        failed = flow.response.status_code >= 500 or status == grpcwire.UNAVAILABLE
        _record(rt, call, call.endpoint, failed)
        if flow.response.stream or status is None or not _may_retry(call, status, flow.response):
            return
        body = call.copy.body()
        if body is None:
            return
        unreached = never_reached(status, flow.response.headers.get(FLAG_HEADER))
        answer = await _retry(rt, flow, info, call, body, unreached)
        if answer is not None:
            flow.response = answer
    finally:
        call.release()


async def _retry(
    rt: SidecarRuntime, flow: http.HTTPFlow, info: FlowInfo, call: GrpcCall, body: bytes,
    unreached: bool = False,
) -> http.Response | None:
    """Send the call again (other endpoints first) until an answer is not retriable.

    `unreached`: the first try never reached an app (refused): `call.unreached` retries, outside
    the retry budget (a call no app has seen adds no load), as for HTTP."""
    retries = call.rule.retries
    avoid = {call.endpoint.address}
    result: H2Response | None = None
    exhausted = False
    attempts = max(call.unreached, retries.attempts) if unreached else retries.attempts
    per_try = retries.per_try_timeout_ms / 1000.0 if retries.per_try_timeout_ms else None
    for attempt in range(1, attempts + 1):
        budgeted = not unreached
        if budgeted and not call.state.budget.try_acquire(time.monotonic()):
            exhausted = True
            break
        rt.metrics.retries.labels(call.state.service).inc()
        try:
            await asyncio.sleep(backoff_ms(attempt, retries.backoff, random.random()) / 1000)
            ep = call.state.endpoints.pick(
                call.candidates, call.policy.load_balancer, time.monotonic(), avoid
            )
            if ep is None:
                exhausted = True
                break
            remaining = call.deadline - time.monotonic() if call.deadline is not None else None
            if remaining is not None and remaining <= 0:
                info.flags.append("UT")
                return error_response(grpcwire.DEADLINE_EXCEEDED, info.flags)
            info.endpoint, info.version = ep.address, ep.version
            info.attempts += 1
            limit = remaining if per_try is None else min(per_try, remaining or per_try)
            result = await _send(rt, info, call, ep, body, limit)
        finally:
            if budgeted:
                call.state.budget.release()
        if result is None:
            _record(rt, call, ep, True)
            avoid.add(ep.address)
            continue
        status = _h2_status(result)
        _record(rt, call, ep, result.status >= 500 or status == grpcwire.UNAVAILABLE)
        unreached = never_reached(status, _h2_header(result, FLAG_HEADER.encode()))
        if status is None or not (unreached or grpcwire.retriable(retries.on, status)):
            return _to_response(result, info.flags)
        avoid.add(ep.address)
        exhausted = attempt == attempts
    info.flags.append("URX")
    if result is not None and exhausted:
        return _to_response(result, info.flags)
    if flow.response is not None:
        flow.response.headers[FLAG_HEADER] = ",".join(info.flags)
    return None


async def _send(
    rt: SidecarRuntime, info: FlowInfo, call: GrpcCall, ep: Endpoint, body: bytes,
    remaining: float | None,
) -> H2Response | None:
    headers = [(k, v) for k, v in call.headers if k.lower() != b"grpc-timeout"]
    if remaining is not None:
        headers.append((b"grpc-timeout", grpcwire.format_timeout(remaining).encode()))
    context = server_hostname = None
    scheme = b"http"
    peer = rt.peer_tls(info.snapshot, call.service, ep.address)
    if peer is not None and rt.tls is not None:
        context, server_hostname, scheme = h2_context(rt.tls, rt.h2_contexts), peer.server_hostname, b"https"
    request = [
        (b":method", b"POST"), (b":scheme", scheme),
        (b":authority", call.authority.encode()), (b":path", call.path.encode()),
        *headers,
    ]
    ep.active += 1
    try:
        async with asyncio.timeout(remaining):
            return await rt.h2.request(ep.address, request, body, context, server_hostname)
    except (UpstreamError, TimeoutError):
        return None
    finally:
        ep.active -= 1


def recoverable(flow: http.HTTPFlow, info: FlowInfo) -> bool:
    """An upstream refused this call's stream (REFUSED_STREAM, or above a GOAWAY's last
    stream) before it answered, and `h2c` lets the `error` hook answer instead (outbound:
    only once the request ended, as its body is what is sent again)."""
    answerable = flow.metadata.get(h2c.ANSWERABLE)
    if answerable is None or flow.error is None or not h2c.refused(flow.error.msg):
        return False
    if info.role == "inbound":  # no body needed: the caller's sidecar has it
        return info.protocol == "grpc"
    call: GrpcCall | None = flow.metadata.get(GRPC_KEY)
    return (answerable == "complete" and call is not None and call.unreached > 0
            and call.copy.body() is not None)


async def recover(rt: SidecarRuntime, flow: http.HTTPFlow, info: FlowInfo) -> http.Response:
    """The answer to a refused call (`recoverable`): outbound, the call sent to other
    endpoints; inbound, UNAVAILABLE flagged UF (the app never saw it: the caller's sidecar
    may send it elsewhere)."""
    if info.role == "inbound":
        info.flags.append("UF")
        return error_response(grpcwire.UNAVAILABLE, info.flags, "the app refused the stream")
    call: GrpcCall = flow.metadata.pop(GRPC_KEY)
    try:
        _record(rt, call, call.endpoint, True)
        body = call.copy.body()
        assert body is not None
        answer = await _retry(rt, flow, info, call, body, unreached=True)
        if answer is None:
            info.flags.append("UF")
            answer = error_response(grpcwire.UNAVAILABLE, info.flags)
        return answer
    finally:
        call.release()


def _h2_header(result: H2Response, name: bytes) -> str | None:
    for key, value in result.headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _h2_status(result: H2Response) -> int | None:
    for name, value in (*result.trailers, *result.headers):
        if name == b"grpc-status":
            return grpcwire.parse_status(value)
    return None


def _to_response(result: H2Response, flags: list[str]) -> http.Response:
    headers = [(k, v) for k, v in result.headers if not k.startswith(b":")]
    response = http.Response(
        b"HTTP/2.0", result.status, b"", http.Headers(headers), result.body,
        http.Headers(result.trailers) if result.trailers else None, time.time(), time.time(),
    )
    if flags:
        response.headers[FLAG_HEADER] = ",".join(flags)
    return response


# --- inbound -----------------------------------------------------------------------------------


def inbound_call(
    flow: http.HTTPFlow, info: FlowInfo, upstreams: Upstreams | None = None
) -> Awaitable[None] | None:
    """`requestheaders` of a gRPC call to this sidecar's app: admit it, then let it stream.

    Without a live connection to the app (for this client connection), its port is tried
    first: a refused connect is answered UNAVAILABLE flagged UF, which the caller's sidecar
    sends to another endpoint (the app never saw the call)."""
    info.protocol = "grpc"
    refusal = admission(flow, info)
    if refusal is not None:
        flow.response = as_grpc_error(refusal, info.flags)
        return None
    app = info.snapshot.bindings.app
    if app is None:
        info.flags.append("UH")
        flow.response = error_response(grpcwire.UNAVAILABLE, info.flags)
        return None
    _forward_inbound(flow, info, app)
    if upstreams is not None and not upstreams.has(flow.client_conn.id, app):
        return _probe_app(flow, info, app)
    return None


async def _probe_app(flow: http.HTTPFlow, info: FlowInfo, app: str) -> None:
    if not await reachable(app, CONNECT_PROBE_S):
        info.flags.append("UF")
        flow.request.stream = False
        flow.response = error_response(grpcwire.UNAVAILABLE, info.flags)


def _forward_inbound(flow: http.HTTPFlow, info: FlowInfo, app: str) -> None:
    request = flow.request
    for name in (*INTERNAL_HEADERS, XFCC_HEADER):
        request.headers.pop(name, None)
    xfcc = client_cert_header(info)
    if xfcc is not None:
        request.headers[XFCC_HEADER] = xfcc
    info.traceparent = next_traceparent(
        info.headers.get("traceparent"), info.snapshot.config.telemetry.tracing_sampling
    )
    request.headers["traceparent"] = info.traceparent
    info.endpoint, info.attempts, info.native = app, 1, True
    _point_at(flow, app, "http")
    request.stream = True


def stream_response(flow: http.HTTPFlow) -> None:
    if flow.response is not None:
        flow.response.stream = True
