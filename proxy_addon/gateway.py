"""A gateway listener: carry out the gateway's Decision (gateway rule, then the destination's Route)."""

from __future__ import annotations

from mitmproxy import http

from meshctl.decision import decide
from meshctl.decision.headers import apply_header_ops
from proxy_addon.flowinfo import FlowInfo
from proxy_addon.outbound import outbound_request, serve_decision
from proxy_addon.responses import answer_response
from proxy_addon.runtime import SidecarRuntime


async def serve_gateway(rt: SidecarRuntime, flow: http.HTTPFlow, info: FlowInfo) -> http.Response:
    decision = decide(info.snapshot.config, outbound_request(flow.request, info))
    gateway_rule = decision.gateway_rule
    if decision.destination is None or gateway_rule is None:  # the gateway answers by itself
        info.rule = decision.rule_name
        assert decision.answer is not None
        return answer_response(decision.answer, info.flags)
    # The forwarded request carries the gateway rule's header operations (the route matched on
    # them already, in `decide`).
    apply_header_ops(flow.request.headers, gateway_rule.request_headers)
    response = await serve_decision(rt, info, flow.request, decision)
    apply_header_ops(response.headers, gateway_rule.response_headers)
    return response
