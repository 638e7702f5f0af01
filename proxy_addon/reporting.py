"""What a finished request leaves behind: Istio metrics, one access log entry, one span.

Called once per flow by the addon. Label tuples come from `rt.labels` (built at config
load); here they are only concatenated with what the request decided (status, flags,
protocol). Health probes sent by other sidecars are not requests: they leave nothing here.
"""

from __future__ import annotations

import time

from mitmproxy import http

from proxy_addon.accesslog import rfc3339
from proxy_addon.flowinfo import FlowInfo
from proxy_addon.labels import BLACKHOLE, PASSTHROUGH, PEER_HEADER, unknown_dest
from proxy_addon.runtime import SidecarRuntime
from proxy_addon.tracing import Attr, next_traceparent, parse_traceparent

HEALTH_CHECK_HEADER = "x-mesh-health-check"  # set by a prober sidecar; never forwarded


def _size(message: http.Message | None) -> tuple[int, int]:
    """(headers, body) bytes on the wire, as Istio's request/response size counts them."""
    if message is None:
        return 0, 0
    head = sum(len(k) + len(v) + 4 for k, v in message.headers.fields)
    body = message.raw_content
    if body is not None:
        return head, len(body)
    length = message.headers.get("content-length", "")
    return head, int(length) if length.isdigit() else 0


def _upstream_mtls(rt: SidecarRuntime, info: FlowInfo) -> bool:
    snap = info.snapshot
    return (
        snap.config.mtls != "disabled"
        and rt.tls is not None
        and info.endpoint is not None
        and info.endpoint not in snap.bindings.plaintext_endpoints
    )


def finish(rt: SidecarRuntime, flow: http.HTTPFlow, info: FlowInfo, status: int) -> None:
    if info.role == "inbound" and HEALTH_CHECK_HEADER in info.headers:
        return
    end = time.monotonic()
    duration_ms = (end - info.started) * 1000.0
    wall_end = time.time()
    lab = rt.labels
    request, response = flow.request, flow.response
    flags = ",".join(info.flags) or "-"
    if info.role == "inbound":
        mtls = info.identity is not None
        source = lab.peer(info.headers.get(PEER_HEADER), info.identity)
        dest = lab.inbound_mtls if mtls else lab.inbound_plain
        reporter, security = "destination", ("mutual_tls" if mtls else "none")
        cluster = lab.inbound_cluster
    else:
        mtls = _upstream_mtls(rt, info)
        source = lab.source_mtls if mtls else lab.source_plain
        reporter, security = "source", "unknown"
        if info.service == BLACKHOLE:
            dest, flags = unknown_dest(BLACKHOLE), "-"  # Envoy: a direct response, no flag
            cluster = BLACKHOLE
        elif info.service == PASSTHROUGH or info.service not in info.snapshot.config.destinations:
            dest = unknown_dest(info.service)
            cluster = info.service
        else:
            dest = lab.destination(info.service, info.version, mtls)
            cluster = lab.outbound_cluster(info.version, dest[5])
    ctype = info.headers.get("content-type", "")
    grpc = ctype.startswith("application/grpc")
    grpc_status = ""
    if grpc and response is not None:
        grpc_status = response.headers.get("grpc-status", "") or (
            response.trailers.get("grpc-status", "") if response.trailers else "")
    code = str(status)
    req_head, req_body = _size(request)
    resp_head, resp_body = _size(response)
    rt.metrics.observe(
        (reporter, *source, *dest, "grpc" if grpc else "http", code, grpc_status, flags, security),
        duration_ms, req_head + req_body, resp_head + resp_body,
    )
    traceparent = info.traceparent
    incoming = info.headers.get("traceparent")
    if not traceparent and rt.spans.enabled:
        traceparent = next_traceparent(incoming, info.snapshot.config.telemetry.tracing_sampling)
    own = parse_traceparent(traceparent)
    authority = ""  # read from the headers only for what is written below
    if rt.access_log.enabled:
        authority = request.host_header or request.host
    if rt.access_log.enabled:
        rt.access_log.write({
            "start_time": rfc3339(wall_end - duration_ms / 1000.0),
            "method": request.method,
            "path": request.path,
            "protocol": request.http_version,
            "response_code": status,
            "response_flags": flags,
            "bytes_received": req_body,
            "bytes_sent": resp_body,
            "duration": int(duration_ms),
            "upstream_host": info.endpoint,
            "upstream_cluster": cluster,
            "x_forwarded_for": info.headers.get("x-forwarded-for"),
            "user_agent": info.headers.get("user-agent"),
            "request_id": info.headers.get("x-request-id"),
            "authority": authority,
            "route_name": info.rule,
            "downstream_peer_uri_san": info.identity,
            "trace_id": own.trace_id if own else None,
            # meshctl's own
            "direction": info.role,
            "service": info.service,
            "version": info.version,
            "attempts": info.attempts,
            "streamed": info.native,
            "source_workload": source[0],
            "access_policy": info.access_policy,
            "connection_security_policy": security,
            "revision": info.snapshot.revision,
            "grpc_status": grpc_status or None,  # as Istio's %GRPC_STATUS%
        })
    if own is not None and own.sampled and rt.spans.enabled:
        parent = parse_traceparent(incoming)
        authority = authority or request.host_header or request.host
        attrs: list[Attr] = [
            ("http.request.method", request.method),
            ("url.path", request.path),
            ("server.address", authority),
            ("network.protocol.version", request.http_version.removeprefix("HTTP/")),
            ("http.response.status_code", status),
            ("meshctl.response_flags", flags),
            ("peer.service", dest[6] if info.role != "inbound" else source[3]),
        ]
        if info.rule:
            attrs.append(("meshctl.route_rule", info.rule))
        if info.endpoint:
            attrs.append(("network.peer.address", info.endpoint))
        if (rid := info.headers.get("x-request-id")) is not None:
            attrs.append(("guid:x-request-id", rid))
        if (ua := info.headers.get("user-agent")) is not None:
            attrs.append(("user_agent.original", ua))
        kind = "client" if info.role == "outbound" else "server"
        name = f"{request.method} {info.rule}" if info.rule else request.method
        end_ns = int(wall_end * 1e9)
        rt.spans.record((
            kind, name, own.trace_id, own.span_id, parent.span_id if parent else "",
            end_ns - int(duration_ms * 1e6), end_ns,
            status >= 500 or (kind == "client" and status >= 400) or status == 0, attrs,
        ))
