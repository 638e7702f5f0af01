"""Streaming requests (large bodies, upgrades, event streams) ride mitmproxy's own path.

The pooled client buffers whole messages, which is what makes retries possible. A request
that must stream is instead pointed at one endpoint here, in `requestheaders`, and mitmproxy
carries the bytes both ways as they come. No retries, no timeout, no mirror on this path;
a rule that answers by itself (redirect, direct response, fault) falls back to buffering.
"""

from __future__ import annotations

import time

from mitmproxy import http

from meshctl.decision import decide
from meshctl.decision.headers import apply_header_ops
from proxy_addon.flowinfo import (
    INTERNAL_HEADERS,
    SOURCE_VERSION_HEADER,
    SOURCE_WORKLOAD_HEADER,
    STREAM_HINT_HEADER,
    XFCC_HEADER,
    FlowInfo,
)
from proxy_addon.inbound import admission, client_cert_header
from proxy_addon.labels import PEER_HEADER
from proxy_addon.outbound import choose_backend, lb_hash_key, outbound_request
from proxy_addon.runtime import SidecarRuntime
from proxy_addon.tracing import next_traceparent
from proxy_addon.upstream import StreamInstead


def _point_at(flow: http.HTTPFlow, address: str, scheme: str, host_header: str) -> None:
    host, _, port = address.rpartition(":")
    flow.request.scheme = scheme
    flow.request.host = host
    flow.request.port = int(port)
    flow.request.headers["host"] = host_header
    flow.request.stream = True


def stream_instead(flow: http.HTTPFlow, info: FlowInfo, signal: StreamInstead) -> None:
    """A buffered attempt found a large answer: let mitmproxy fetch it again and stream it,
    with the headers and target the pooled attempt used (route, rewrite, trace context)."""
    flow.request.path = signal.target
    flow.request.headers = http.Headers(
        [(k.encode("latin-1"), v.encode("latin-1")) for k, v in signal.headers.items()]
    )
    if info.role != "inbound":
        flow.request.headers[STREAM_HINT_HEADER] = "1"
    info.native = True
    info.endpoint = signal.address
    _point_at(flow, signal.address, signal.scheme, signal.headers.get("host", info.service))
    flow.request.stream = False  # the body (if any) is already read


def route_stream(rt: SidecarRuntime, flow: http.HTTPFlow, info: FlowInfo) -> None:
    snap = info.snapshot
    if info.role == "inbound":
        refusal = admission(flow, info)
        if refusal is not None:
            flow.response = refusal
            return
        if snap.bindings.app is None:
            return
        for name in INTERNAL_HEADERS:
            flow.request.headers.pop(name, None)
        xfcc = client_cert_header(info)
        if xfcc is not None:
            flow.request.headers[XFCC_HEADER] = xfcc
        info.endpoint, info.attempts, info.native = snap.bindings.app, 1, True
        _point_at(flow, snap.bindings.app, "http", flow.request.host_header or info.service)
        return
    decision = decide(snap.config, outbound_request(flow.request, info))
    rule, view, dest = decision.rule, decision.view, decision.destination
    # Anything but a plain forward (an answer, a fault, a sticky split) takes the buffered path.
    if decision.answer is not None or rule is None or dest is None or view is None:
        return
    if rule.fault is not None or rule.sticky is not None:
        return
    backend = choose_backend(decision, info)
    target_dest = info.snapshot.destination(backend.service) or dest
    state = rt.state.dest_state(backend.service)
    candidates = info.snapshot.endpoints_for(backend.service, backend.version)
    ep = state.endpoints.pick(
        candidates, target_dest.traffic_policy.load_balancer, time.monotonic(), set(),
        lb_hash_key(target_dest.traffic_policy, view),
    )
    if ep is None:
        return
    if decision.gateway_rule is not None:  # the route matched on them already, in `decide`
        apply_header_ops(flow.request.headers, decision.gateway_rule.request_headers)
    info.service, info.version, info.rule = backend.service, ep.version, decision.rule_name
    info.endpoint, info.attempts, info.native = ep.address, 1, True
    host = decision.upstream_host or backend.service
    flow.request.path = decision.upstream_target or flow.request.path
    apply_header_ops(flow.request.headers, rule.request_headers)
    apply_header_ops(flow.request.headers, backend.request_headers)
    info.traceparent = next_traceparent(
        flow.request.headers.get("traceparent"),
        info.snapshot.config.telemetry.tracing_sampling,
    )
    flow.request.headers["traceparent"] = info.traceparent
    flow.request.headers[SOURCE_WORKLOAD_HEADER] = info.source_workload
    flow.request.headers[SOURCE_VERSION_HEADER] = info.source_version
    flow.request.headers[PEER_HEADER] = rt.labels.peer_header
    # https: mitmproxy's own upstream connection; MeshTls.tls_start_server does the mTLS.
    scheme = "http"
    if rt.tls is not None and rt.peer_tls(info.snapshot, backend.service, ep.address):
        scheme = "https"
        rt.tls.expect(flow.client_conn.id, ep.address, target_dest.identity)
    _point_at(flow, ep.address, scheme, host)
