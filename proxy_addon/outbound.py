"""The client side of a call: carry out a routing Decision, then send with retries and timeouts.

Runs on the outbound listener (the app called `http://<service>/...` through its
`HTTP_PROXY`) and behind a gateway rule. What happens is decided by `meshctl.decision.decide`
(the same function `meshctl explain` prints); this module draws what is left to chance (faults,
splits, a new sticky cookie, mirrors) and performs the upstream attempts with the pooled client.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

from mitmproxy import http
from multidict import CIMultiDict

from meshctl.contract import (
    CompiledBackend,
    CompiledRouteRule,
    CompiledStickyCookie,
    CompiledTrafficPolicy,
)
from meshctl.decision import NEVER_REACHED, Decision, Request, retry_unreached_only, routing
from meshctl.decision.headers import apply_header_ops
from meshctl.decision.routing import RequestView
from proxy_addon.endpoints import healthy_backend
from proxy_addon.flowinfo import (
    REQUEST_PRINCIPAL_HEADER,
    SOURCE_VERSION_HEADER,
    SOURCE_WORKLOAD_HEADER,
    STREAM_RESPONSE_OVER,
    FlowInfo,
    forward_headers,
    host_header,
    make_response,
)
from proxy_addon.labels import PEER_HEADER
from proxy_addon.limits import Overflow
from proxy_addon.responses import FLAG_HEADER, answer_response, flag_response
from proxy_addon.retry import app_unreached, backoff_ms, retriable_error, retriable_status
from proxy_addon.runtime import SidecarRuntime
from proxy_addon.state import DestinationState
from proxy_addon.tracing import next_traceparent
from proxy_addon.upstream import UpstreamError, UpstreamResponse

logger = logging.getLogger(__name__)

_ERROR_STATUS = {"connect-failure": (503, "UF"), "reset": (503, "UC"), "timeout": (504, "UT")}


def choose_backend(decision: Decision, info: FlowInfo) -> CompiledBackend:
    """Sticky users keep their backend; a cookie-sticky user without a cookie gets one."""
    rule = decision.rule
    assert rule is not None
    sticky = rule.sticky
    if decision.sticky_key is None and sticky is not None and sticky.cookie is not None:
        return routing.pick_sticky(rule.backends, issue_cookie(sticky.cookie, info))
    if len(decision.backends) == 1:
        return decision.backends[0][0]
    return routing.pick_weighted(rule.backends, random.random())


def issue_cookie(cookie: CompiledStickyCookie, info: FlowInfo) -> str:
    """A new random key, sent back to the client as `cookie` so its next requests carry it."""
    key = uuid.uuid4().hex
    info.set_cookies.append(f"{cookie.name}={key}; Max-Age={cookie.ttl_ms // 1000}; Path=/; HttpOnly")
    return key


def lb_hash_key(policy: CompiledTrafficPolicy, view: RequestView, info: FlowInfo | None = None) -> str | None:
    """The key a hash load balancer hashes on. With `info`, a client without the hash cookie
    gets one (as Istio's consistentHash httpCookie with a ttl), so it keeps its endpoint."""
    lb = policy.load_balancer
    if lb.hash_header:
        return view.headers.get(lb.hash_header.lower())
    if lb.hash_cookie:
        key = view.cookies.get(lb.hash_cookie.name)
        if key is None and info is not None:
            key = issue_cookie(lb.hash_cookie, info)
        return key
    return None


def outbound_request(
    request: http.Request, info: FlowInfo, listener: str | None = None,
    claims: Mapping[str, Any] | None = None,
) -> Request:
    """What a decision reads of a request arriving on the outbound listener or a gateway
    (`listener` and `claims`: a gateway's, see `Request`)."""
    return Request(
        request.method, request.path, request.host.lower(), info.headers,
        authority=host_header(request, info.headers) or "",
        body_size=len(request.raw_content or b""),
        source_version=info.snapshot.bindings.version if info.snapshot.config.kind == "service" else None,
        listener=listener, claims=claims,
    )


async def serve_decision(
    rt: SidecarRuntime, info: FlowInfo, request: http.Request, decision: Decision
) -> http.Response:
    """Carry out a decision that does not pass through: answer, or fault, split and send."""
    info.service = decision.service or info.service
    info.rule = decision.rule_name
    if decision.answer is not None:
        return answer_response(decision.answer, info.flags)
    rule, view = decision.rule, decision.view
    assert rule is not None and view is not None and decision.destination is not None
    fault = rule.fault
    if fault is not None and fault.delay is not None:
        if random.random() * 100.0 < fault.delay.percent:
            info.flags.append("DI")
            await asyncio.sleep(fault.delay.fixed_ms / 1000.0)  # never blocks other flows
    if fault is not None and fault.abort is not None:
        if random.random() * 100.0 < fault.abort.percent:
            info.flags.append("FI")
            return flag_response(fault.abort.status, info.flags)
    now = time.monotonic()

    def has_available(candidate: CompiledBackend) -> bool:
        eps = info.snapshot.endpoints_for(candidate.service, candidate.version)
        return bool(eps) and rt.state.dest_state(candidate.service).endpoints.any_available(eps, now)

    backend = healthy_backend(rule.backends, choose_backend(decision, info), has_available,
                              decision.sticky_key)
    info.service = backend.service
    target_dest = info.snapshot.destination(backend.service) or decision.destination
    headers = forward_headers(request)
    headers["host"] = decision.upstream_host or backend.service
    apply_header_ops(headers, rule.request_headers)
    apply_header_ops(headers, backend.request_headers)
    info.traceparent = next_traceparent(
        view.headers.get("traceparent"), info.snapshot.config.telemetry.tracing_sampling
    )
    headers["traceparent"] = info.traceparent
    headers[SOURCE_WORKLOAD_HEADER] = info.source_workload
    headers[SOURCE_VERSION_HEADER] = info.source_version
    if info.request_principal is not None:
        headers[REQUEST_PRINCIPAL_HEADER] = info.request_principal
    headers[PEER_HEADER] = rt.labels.peer_header
    upstream_target = decision.upstream_target or request.path
    body = request.raw_content or b""
    if rule.mirror is not None and random.random() * 100.0 < rule.mirror.percent:
        rt.mirror(info, rule.mirror.service, rule.mirror.version, request.method,
                  upstream_target, headers, body)
    try:
        async with asyncio.timeout(rule.timeout_ms / 1000.0 if rule.timeout_ms else None):
            response = await send_with_retries(
                rt, info, rule, max(decision.retry_attempts, decision.unreached_retries), backend,
                target_dest.traffic_policy, view,
                request.method, upstream_target, headers, body,
            )
    except TimeoutError:
        info.flags.append("UT")
        return flag_response(504, info.flags)
    apply_header_ops(response.headers, rule.response_headers)
    apply_header_ops(response.headers, backend.response_headers)
    for cookie in info.set_cookies:
        response.headers.add("set-cookie", cookie)
    return response


async def send_with_retries(
    rt: SidecarRuntime,
    info: FlowInfo,
    rule: CompiledRouteRule,
    retry_attempts: int,
    backend: CompiledBackend,
    policy: CompiledTrafficPolicy,
    view: RequestView,
    method: str,
    target: str,
    headers: CIMultiDict[str],
    body: bytes,
) -> http.Response:
    state = rt.state.dest_state(backend.service)
    candidates = info.snapshot.endpoints_for(backend.service, backend.version)
    if not candidates:
        info.flags.append("UH")
        return flag_response(503, info.flags)
    try:
        await state.gate.acquire()
    except Overflow:
        info.flags.append("UO")
        return flag_response(503, info.flags)
    state.budget.requests_in_flight += 1
    try:
        return await _attempts(
            rt, info, state, rule, retry_attempts, policy, candidates, view, method, target, headers, body
        )
    finally:
        state.budget.requests_in_flight -= 1
        state.gate.release()


async def _attempts(
    rt: SidecarRuntime,
    info: FlowInfo,
    state: DestinationState,
    rule: CompiledRouteRule,
    retry_attempts: int,
    policy: CompiledTrafficPolicy,
    candidates: tuple,
    view: RequestView,
    method: str,
    target: str,
    headers: CIMultiDict[str],
    body: bytes,
) -> http.Response:
    retries = rule.retries
    tries = 1 + retry_attempts  # 0 when the method or body rules retries out (`decide`)
    unreached_only = retry_unreached_only(retries, method)  # a status or reset ends it
    per_try = retries.per_try_timeout_ms / 1000.0 if retries.per_try_timeout_ms else None
    hash_key = lb_hash_key(policy, view, info)
    od = policy.outlier_detection
    avoid: set[str] = set()
    result: UpstreamResponse | str | None = None
    gave_up = False
    unreached = False  # the last attempt never reached an app (connect failure)
    for attempt in range(tries):
        is_retry = attempt > 0
        budgeted = is_retry and not unreached
        if is_retry:
            # A retry counts against the budget from its backoff until its answer. The budget
            # keeps retries from multiplying an app's load; a request no app has seen adds
            # none, so a connect failure is always tried on another endpoint.
            if budgeted and not state.budget.try_acquire(time.monotonic()):
                gave_up = True
                break
            rt.metrics.retries.labels(state.service).inc()
        try:
            if is_retry:
                await asyncio.sleep(backoff_ms(attempt, retries.backoff, random.random()) / 1000)
            ep = state.endpoints.pick(
                candidates, policy.load_balancer, time.monotonic(), avoid, hash_key
            )
            if ep is None:
                if result is None:
                    info.flags.append("UH")
                    return flag_response(503, info.flags)
                gave_up = True
                break
            info.endpoint, info.version = ep.address, ep.version
            info.attempts += 1
            ep.active += 1
            try:
                async with asyncio.timeout(per_try):
                    tls = rt.peer_tls(info.snapshot, state.service, ep.address)
                    result = await rt.upstream.send(
                        ep.address, target, method, headers, body, tls=tls,
                        stream_over=STREAM_RESPONSE_OVER if method == "GET" else None,
                    )
            except UpstreamError as exc:
                result = exc.kind
            except TimeoutError:
                result = "timeout"
            finally:
                ep.active -= 1
        finally:
            if budgeted:
                state.budget.release()
        failed = isinstance(result, str) or result.status >= 500
        if state.endpoints.record(ep, failed, time.monotonic(), od):
            rt.metrics.ejections.labels(state.service).inc()
            logger.warning("ejected an endpoint of %s after consecutive failures",
                           state.service)
        unreached = result == "connect-failure" or (
            isinstance(result, UpstreamResponse) and app_unreached(result.status, result.headers)
        )  # the far sidecar found no app: as a connect failure
        if unreached:
            retriable = retriable_error(retries.on, "connect-failure")
        elif isinstance(result, str):
            retriable = retriable_error(retries.on, result)
        else:
            retriable = retriable_status(retries.on, result.status)
        # the far sidecar's 503 UF/UH: its app refused the connection, so no app saw this try
        never_reached = unreached or (isinstance(result, str) and result in NEVER_REACHED)
        if not retriable or (unreached_only and not never_reached):
            break
        gave_up = attempt + 1 >= tries
        avoid.add(ep.address)
    exhausted = gave_up and info.attempts > 1
    if isinstance(result, UpstreamResponse):
        response = make_response(result.status, result.reason, result.headers, result.body)
        if exhausted:
            info.flags.append("URX")
            response.headers[FLAG_HEADER] = ",".join(info.flags)
        return response
    status, flag = _ERROR_STATUS.get(result or "reset", (503, "UF"))
    info.flags.append(flag)
    if exhausted:
        info.flags.append("URX")
    return flag_response(status, info.flags)
