"""Where would this request go, and why: the sidecar's decisions, computed from compiled configs.

Every decision is made by the pure functions the sidecar itself runs (`proxy_addon.routing` for
rule matching, splits, sticky choice and rewrites; `proxy_addon.access.decide` for the access
verdict), in the order the addon applies them: destination lookup (unknown host, denied at the
source), gateway rule, route rule, redirect or direct response, injected faults, backend choice,
then the access policy of the backend's service.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshctl.contract import CompiledGatewayRule, CompiledRouteRule, Destination, RequestMatch, SidecarConfig
from meshctl.diff import words
from meshctl.explain.result import ExplainError, Explanation, Request, split_url
from proxy_addon import routing
from proxy_addon.access import decide


def explain(configs: Mapping[str, SidecarConfig], request: Request) -> Explanation:
    caller = configs.get(request.source)
    if caller is None:
        known = ", ".join(sorted(configs)) or "none"
        raise ExplainError(f"no sidecar named {request.source!r} (known: {known})")
    method = request.method.upper()
    host, target = split_url(request.url)
    headers = {k.lower(): v for k, v in request.headers.items()}
    if host:
        headers.setdefault("host", host)
    view = routing.view_from_target(method, target, headers)
    result = Explanation(request.source, method, request.url)

    if caller.kind == "gateway":
        return _via_gateway(configs, caller, view, target, result)
    if not host:
        raise ExplainError(f"URL {request.url!r} must name the service: http://<service>/<path>")
    dest = caller.destinations.get(host)
    if dest is None:
        result.destination = host
        if host in caller.denied:
            _answer(result, 403, "RBAC", f"{request.source} may never call {host}")
            result.access, result.access_reason = "deny", "refused at the source (no policy admits it)"
        elif caller.outbound_policy == "registry-only":
            _answer(result, 502, "NR", f"{host} is not a mesh service (outbound policy registry-only)")
        else:
            result.notes.append(f"{host} is outside the mesh: passed through (allow-any)")
        return result
    return _via_route(configs, caller, dest, view, target, result)


def _answer(result: Explanation, status: int, flag: str | None, note: str) -> None:
    result.status = status
    if flag:
        result.flags.append(flag)
    result.notes.append(note)


def _matched_words(match: RequestMatch | None) -> str:
    return "any request" if match is None else words.request_match(match)


def _via_gateway(
    configs: Mapping[str, SidecarConfig],
    gateway_cfg: SidecarConfig,
    view: routing.RequestView,
    target: str,
    result: Explanation,
) -> Explanation:
    gateway = gateway_cfg.gateway
    matched = routing.match_rule(gateway.rules, view) if gateway else None
    if matched is None:
        _answer(result, 404, "NR", "no gateway rule matches")
        return result
    rule, match = matched
    result.gateway_rule, result.rule, result.matched = rule.name, rule.name, _matched_words(match)
    if _answers_itself(result, rule, target, view.headers.get("host", "localhost")):
        return result
    dest = gateway_cfg.destinations.get(rule.service or "")
    if dest is None:
        result.destination = rule.service
        _answer(result, 502 if rule.service else 404, "NR", f"gateway rule {rule.name!r} names no reachable service")
        return result
    headers = dict(view.headers)  # the gateway's header rules apply before the route matches
    for name in rule.request_headers.remove:
        headers.pop(name.lower(), None)
    headers.update({k.lower(): v for k, v in rule.request_headers.set.items()})
    for k, v in rule.request_headers.add.items():  # an added value joins an existing one, as
        key = k.lower()  # mitmproxy's headers read back
        headers[key] = f"{headers[key]}, {v}" if key in headers else v
    view = routing.view_from_target(view.method, target, headers)
    return _via_route(configs, gateway_cfg, dest, view, target, result)


def _answers_itself(result: Explanation, rule: CompiledRouteRule | CompiledGatewayRule, target: str, host: str) -> bool:
    if rule.redirect is not None:
        result.location = routing.redirect_location(rule.redirect, target, host)
        _answer(result, rule.redirect.status, None, f"redirected to {result.location}")
        return True
    if rule.respond is not None:
        _answer(result, rule.respond.status, None, "answered by the sidecar (direct response)")
        return True
    return False


def _via_route(
    configs: Mapping[str, SidecarConfig],
    caller: SidecarConfig,
    dest: Destination,
    view: routing.RequestView,
    target: str,
    result: Explanation,
) -> Explanation:
    result.destination = dest.service
    matched = routing.match_rule(dest.rules, view)
    if matched is None:
        _answer(result, 404, "NR", f"no rule of the {dest.service} route matches")
        if result.gateway_rule:
            result.rule = result.gateway_rule
        return result
    rule, match = matched
    result.rule = f"{result.gateway_rule}/{rule.name}" if result.gateway_rule else rule.name
    if result.gateway_rule and result.gateway_rule == rule.name:
        result.rule = rule.name
    result.matched = _matched_words(match)
    result.rule_obj = rule
    if _answers_itself(result, rule, target, view.headers.get("host", dest.service)):
        return result
    _faults(result, rule)
    if result.status is not None:  # an abort is the response: nothing is forwarded
        return result
    result.split = routing.backend_probabilities(rule.backends)
    result.sticky = words.sticky(rule.sticky) if rule.sticky else None
    key = routing.sticky_key(rule.sticky, view)
    if key is not None:
        result.sticky_key = key
        result.backends = [(routing.pick_sticky(rule.backends, key), 1.0)]
    else:
        result.backends = [(b, p) for b, p in result.split if p > 0]
        if rule.sticky is not None and rule.sticky.cookie is not None:
            result.notes.append(
                f"no {rule.sticky.cookie.name} cookie: a random pick by weight, kept by a cookie set on the response"
            )
    result.upstream_target = routing.rewritten_path(target, rule.rewrite, match)
    result.upstream_host = rule.rewrite.host if rule.rewrite and rule.rewrite.host else None
    _access(configs, caller, result)
    return result


def _faults(result: Explanation, rule: CompiledRouteRule) -> None:
    fault = rule.fault
    if fault is None:
        return
    if fault.delay is not None and fault.delay.percent > 0:
        if fault.delay.percent >= 100:
            result.flags.append("DI")
        result.notes.append(
            f"delay {words.duration(fault.delay.fixed_ms)} injected for "
            f"{words.percent(fault.delay.percent)} of requests"
        )
    if fault.abort is not None and fault.abort.percent > 0:
        if fault.abort.percent >= 100:
            _answer(result, fault.abort.status, "FI", f"aborted with {fault.abort.status} (fault)")
        else:
            result.notes.append(
                f"aborted with {fault.abort.status} for {words.percent(fault.abort.percent)} of requests (fault)"
            )


def _access(configs: Mapping[str, SidecarConfig], caller: SidecarConfig, result: Explanation) -> None:
    """The access verdict of each service the request may reach; any deny refuses it."""
    identity = caller.identity if caller.mtls != "disabled" else None
    services = sorted({b.service for b, _ in result.backends})
    reasons = []
    for service in services:
        target_cfg = configs.get(service)
        if target_cfg is None or target_cfg.inbound is None:
            reasons.append(f"{service}: no sidecar config, not checked")
            continue
        verdict = decide(target_cfg.inbound.access, identity, result.method, result.upstream_target or "/")
        reasons.append(f"{verdict.reason}" if len(services) == 1 else f"{service}: {verdict.reason}")
        if not verdict.allowed:
            result.access = "deny"
    result.access_reason = "; ".join(reasons)
    if result.access == "deny" and result.status is None:
        result.status = 403
        result.flags.append("RBAC")
