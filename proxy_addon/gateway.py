"""A gateway listener: the edge steps (`edge.py`), then the gateway's Decision (gateway rule,
then the destination's Route)."""

from __future__ import annotations

from mitmproxy import http

from meshctl.decision import Decision, decide
from meshctl.decision.cors import is_preflight
from meshctl.decision.headers import apply_header_ops
from meshctl.decision.hosts import choose_listener, host_of
from proxy_addon import edge
from proxy_addon.edge_auth import Principal
from proxy_addon.flowinfo import FlowInfo, host_header
from proxy_addon.outbound import outbound_request, serve_decision
from proxy_addon.responses import answer_response, flag_response
from proxy_addon.runtime import SidecarRuntime


async def gateway_decision(
    rt: SidecarRuntime, flow: http.HTTPFlow, info: FlowInfo
) -> tuple[Decision, Principal | None] | http.Response:
    """The edge steps and the Decision of a request that is forwarded, or the answer to it.
    Also what a gRPC call through the gateway goes through (`grpcflow.gateway_call`)."""
    state = rt.edge
    client = flow.client_conn
    ports = state.ports()
    listeners = ports.get(client.sockname[1]) if client.sockname else None
    if listeners is None:
        # A port no binding names (mitmdump -s with its own --mode): every listener may take it.
        listeners = tuple(lst for on_port in ports.values() for lst in on_port)
    host = host_of(host_header(flow.request, info.headers) or "")
    listener = choose_listener(listeners, host, client.sni, client.tls_established)
    if listener is None:
        info.flags.append("NR")
        return flag_response(404, info.flags)
    edge.drop_forgeable(state, flow.request, info)
    if (limited := edge.rate_limited(state, flow, info, None, after_auth=False)) is not None:
        return limited
    principal = await edge.authenticate(state, info)
    if isinstance(principal, http.Response):
        return principal
    if (limited := edge.rate_limited(state, flow, info, principal, after_auth=True)) is not None:
        return limited
    request = outbound_request(flow.request, info, listener.name,
                               principal.claims if principal is not None else None)
    decision = decide(info.snapshot.config, request)
    gateway_rule = decision.gateway_rule
    if decision.destination is None or gateway_rule is None or decision.answer is not None:
        info.rule = decision.rule_name
        info.service = decision.service or info.service
        assert decision.answer is not None
        if decision.answer.status == 401:
            return edge.unauthorized(decision.answer.reason, info)
        response = answer_response(decision.answer, info.flags)
        if not is_preflight(flow.request.method, info.headers):
            edge.add_cors(response, decision.cors, info)
        return response
    # The forwarded request carries the gateway rule's header operations (the route matched on
    # them already, in `decide`).
    apply_header_ops(flow.request.headers, gateway_rule.request_headers)
    edge.forward_identity(flow.request, principal, info)
    return decision, principal


async def serve_gateway(rt: SidecarRuntime, flow: http.HTTPFlow, info: FlowInfo) -> http.Response:
    decided = await gateway_decision(rt, flow, info)
    if isinstance(decided, http.Response):
        return decided
    decision, _ = decided
    assert decision.gateway_rule is not None
    response = await serve_decision(rt, info, flow.request, decision)
    apply_header_ops(response.headers, decision.gateway_rule.response_headers)
    edge.add_cors(response, decision.cors, info)
    return response
