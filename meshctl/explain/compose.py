"""Where would this request go, and why: the sidecars' own Decisions, put in words.

Nothing is decided here. `meshctl.decision.decide` (the function the sidecar runs) decides for
the caller's sidecar (outbound or gateway); for each service the request may reach, the same
function decides for that service's sidecar (inbound: its access policy) with the caller's
identity. This module turns those Decisions into an `Explanation`.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshctl.contract import ConnectionLimits, RequestMatch, SidecarConfig
from meshctl.decision import Decision, Request, decide
from meshctl.diff import words
from meshctl.explain.result import ExplainError, Explanation, Question, split_url


def explain(configs: Mapping[str, SidecarConfig], question: Question) -> Explanation:
    # `--from reviews/v2`: the sidecars of one version of the caller (`match.from: [reviews/v2]`).
    name, _, version = question.source.partition("/")
    if name == "gateway" or not version:
        name, version = question.source, ""
    caller = configs.get(name)
    if caller is None:
        known = ", ".join(sorted(configs)) or "none"
        raise ExplainError(f"no sidecar named {question.source!r} (known: {known})")
    method = question.method.upper()
    host, target = split_url(question.url)
    if caller.kind != "gateway" and not host:
        raise ExplainError(f"URL {question.url!r} must name the service: http://<service>/<path>")
    headers = {k.lower(): v for k, v in question.headers.items()}
    if host:
        headers.setdefault("host", host)
    asked = Request(method, target, host, headers, authority=headers.get("host", ""),
                    source_version=version or None)
    decision = decide(caller, asked)
    result = Explanation(question.source, method, question.url, decision=decision)
    result.listener, result.connections = _entry_listener(caller, asked)
    _describe(result, decision, host)
    if decision.answer is None and not decision.passthrough:
        _faults(result, decision)
        if result.status is None:  # an abort is the response: nothing is forwarded
            _access(configs, caller, result, decision)
    return result


def _entry_listener(caller: SidecarConfig, asked: Request) -> tuple[str, ConnectionLimits]:
    """The listener the request's connection enters on, and what it allows a connection."""
    if caller.gateway is not None and caller.gateway.listeners:
        chosen = [gl for gl in caller.gateway.listeners if gl.name == asked.listener]
        first = (chosen or list(caller.gateway.listeners))[0]
        return f"gateway listener {first.name} (port {first.port})", first.connections
    return "outbound", caller.connections


def _matched_words(match: RequestMatch | None) -> str:
    return "any request" if match is None else words.request_match(match)


def _describe(result: Explanation, decision: Decision, host: str) -> None:
    result.destination = decision.service or (host or None)
    result.gateway_rule = decision.gateway_rule.name if decision.gateway_rule else None
    result.rule = decision.rule_name
    if decision.rule is not None:
        result.matched = _matched_words(decision.match)
    elif decision.gateway_rule is not None:
        result.matched = _matched_words(decision.gateway_match)
    result.rule_obj = decision.rule
    if decision.passthrough:
        result.notes.append(f"{host} is outside the mesh: passed through (allow-any)")
        return
    answer = decision.answer
    if answer is not None:
        result.status = answer.status
        result.flags.extend(answer.flags)
        result.location = answer.location
        result.notes.append(answer.reason)
        if decision.access is not None and not decision.access.allowed:
            result.access, result.access_reason = "deny", decision.access.reason
        return
    rule = decision.rule
    assert rule is not None
    result.split = list(decision.split)
    result.backends = list(decision.backends)
    result.sticky = words.sticky(rule.sticky) if rule.sticky else None
    result.sticky_key = decision.sticky_key
    if decision.sticky_key is None and rule.sticky is not None and rule.sticky.cookie is not None:
        result.notes.append(
            f"no {rule.sticky.cookie.name} cookie: a random pick by weight, kept by a cookie set on the response"
        )
    result.upstream_target = decision.upstream_target
    result.upstream_host = decision.upstream_host
    result.retry_attempts = decision.retry_attempts
    if decision.retry_refusal:
        result.notes.append(f"not retried: {decision.retry_refusal}")
    if decision.unreached_retries and not decision.retry_attempts:
        result.notes.append(f"retried up to {decision.unreached_retries} times after a failure that never "
                            "reached the app (connect-failure, refused-stream), as for every method")


def _faults(result: Explanation, decision: Decision) -> None:
    fault = decision.fault
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
            result.status = fault.abort.status
            result.flags.append("FI")
            result.notes.append(f"aborted with {fault.abort.status} (fault)")
            result.backends = []
        else:
            result.notes.append(
                f"aborted with {fault.abort.status} for {words.percent(fault.abort.percent)} of requests (fault)"
            )


def _access(
    configs: Mapping[str, SidecarConfig], caller: SidecarConfig, result: Explanation, decision: Decision
) -> None:
    """The inbound Decision of each service the request may reach; any refusal refuses it."""
    identity = caller.identity if caller.mtls != "disabled" else None
    services = sorted({b.service for b, _ in decision.backends})
    target = decision.upstream_target or "/"
    reasons = []
    refusal = None
    for service in services:
        target_cfg = configs.get(service)
        if target_cfg is None or target_cfg.inbound is None:
            reasons.append(f"{service}: no sidecar config, not checked")
            continue
        inbound = decide(target_cfg, Request(result.method, target, inbound=True, identity=identity))
        reason = inbound.access.reason if inbound.access else (inbound.answer.reason if inbound.answer else "")
        reasons.append(reason if len(services) == 1 else f"{service}: {reason}")
        if inbound.answer is not None:
            result.access = "deny"
            refusal = refusal or inbound.answer
    result.access_reason = "; ".join(reasons)
    if refusal is not None and result.status is None:
        result.status = refusal.status
        result.flags.extend(refusal.flags)
