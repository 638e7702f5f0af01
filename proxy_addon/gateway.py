"""A gateway listener: gateway rules pick the destination, whose Route then applies."""

from __future__ import annotations

from mitmproxy import http

from proxy_addon import routing
from proxy_addon.flowinfo import FlowInfo, request_view
from proxy_addon.outbound import apply_response_ops, serve_destination
from proxy_addon.responses import flag_response
from proxy_addon.runtime import SidecarRuntime


async def serve_gateway(rt: SidecarRuntime, flow: http.HTTPFlow, info: FlowInfo) -> http.Response:
    gateway = info.snapshot.config.gateway
    request = flow.request
    view = request_view(request, info.headers)
    matched = routing.match_rule(gateway.rules, view) if gateway else None
    if matched is None:
        info.flags.append("NR")
        return flag_response(404, ["NR"])
    rule, _ = matched
    info.rule = rule.name
    if rule.redirect is not None:
        host = request.host_header or "localhost"
        location = routing.redirect_location(rule.redirect, request.path, host)
        return http.Response.make(rule.redirect.status, b"", {"location": location})
    if rule.respond is not None:
        return http.Response.make(
            rule.respond.status, rule.respond.body.encode(), dict(rule.respond.headers)
        )
    dest = info.snapshot.destination(rule.service or "")
    if dest is None:
        info.flags.append("NR")
        return flag_response(502 if rule.service else 404, ["NR"])
    for name in rule.request_headers.remove:
        request.headers.pop(name, None)
    for name, value in rule.request_headers.set.items():
        request.headers[name] = value
    for name, value in rule.request_headers.add.items():
        request.headers.add(name, value)
    view = request_view(request)
    response = await serve_destination(rt, info, request, dest, view, request.path)
    # The log names both decisions: "<gateway rule>/<route rule>".
    info.rule = f"{rule.name}/{info.rule}" if info.rule != rule.name else rule.name
    apply_response_ops(response.headers, rule.response_headers)
    return response
