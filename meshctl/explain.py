"""Where would this request go, and why: the sidecar's decisions, computed from compiled configs.

Every decision is made by the pure functions the sidecar itself runs (`proxy_addon.routing` for
rule matching, splits, sticky choice and rewrites; `proxy_addon.access.decide` for the access
verdict), in the order the addon applies them: destination lookup (unknown host, denied at the
source), gateway rule, route rule, redirect or direct response, injected faults, backend choice,
then the access policy of the backend's service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from meshctl.contract import (
    Backend,
    Destination,
    GatewayRule,
    HeaderOps,
    RequestMatch,
    RouteRule,
    SidecarConfig,
)
from meshctl.diff import words
from meshctl.errors import UsageError
from proxy_addon import routing
from proxy_addon.access import decide


class ExplainError(UsageError):
    """The question cannot be asked: unknown caller, malformed URL or header."""


@dataclass(frozen=True)
class Request:
    source: str  # sidecar name: "productpage" or "gateway/public"
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Explanation:
    source: str
    method: str
    url: str
    destination: str | None = None  # the service whose route applies
    gateway_rule: str | None = None
    rule: str | None = None
    matched: str | None = None  # the match entry that held, in words
    status: int | None = None  # when the sidecar answers itself
    flags: list[str] = field(default_factory=list)
    location: str | None = None  # redirect target
    split: list[tuple[Backend, float]] = field(default_factory=list)  # the rule's weights
    backends: list[tuple[Backend, float]] = field(default_factory=list)  # for this request
    sticky: str | None = None  # how the sticky key is taken, in words
    sticky_key: str | None = None
    rule_obj: RouteRule | None = None
    upstream_target: str | None = None  # path after rewrites
    upstream_host: str | None = None
    access: str = "allow"
    access_reason: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def backend(self) -> Backend | None:
        """The backend this request gets, when that is decided (sticky, or a single backend)."""
        certain = [b for b, p in self.backends if p >= 1.0]
        return certain[0] if len(certain) == 1 else None

    def as_dict(self) -> dict[str, Any]:
        rule = self.rule_obj
        return {
            "source": self.source,
            "method": self.method,
            "url": self.url,
            "destination": self.destination,
            "gateway_rule": self.gateway_rule,
            "rule": self.rule,
            "matched": self.matched,
            "status": self.status,
            "flags": list(self.flags),
            "location": self.location,
            "backends": [_backend_json(b, p) for b, p in self.backends],
            "split": [_backend_json(b, p) for b, p in self.split],
            "backend": backend_name(self.backend) if self.backend else None,
            "sticky": {"by": self.sticky, "key": self.sticky_key} if self.sticky else None,
            "timeout": words.duration(rule.timeout_ms) if rule and rule.timeout_ms else None,
            "timeout_ms": rule.timeout_ms if rule else None,
            "retries": rule.retries.model_dump(mode="json") if rule else None,
            "fault": rule.fault.model_dump(mode="json") if rule and rule.fault else None,
            "mirror": rule.mirror.model_dump(mode="json") if rule and rule.mirror else None,
            "upstream": {"host": self.upstream_host, "target": self.upstream_target}
            if self.upstream_target is not None
            else None,
            "access": self.access,
            "access_reason": self.access_reason,
            "notes": list(self.notes),
        }


def backend_name(backend: Backend) -> str:
    return f"{backend.service}/{backend.version}" if backend.version else backend.service


def _backend_json(backend: Backend, probability: float) -> dict[str, Any]:
    return {
        "service": backend.service,
        "version": backend.version,
        "probability": round(probability, 6),
    }


# --- the request --------------------------------------------------------------------------------


def parse_header(text: str) -> tuple[str, str]:
    """'end-user: jason' -> ('end-user', 'jason')."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or " " in name.strip():
        raise ExplainError(f"header {text!r} must look like 'name: value'")
    return name.strip().lower(), value.strip()


def _split_url(url: str) -> tuple[str, str]:
    """(host without port, origin-form target) of an absolute URL, or ("", target) of a path."""
    if url.startswith("/"):
        return "", url
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ExplainError(f"URL {url!r} must be http://<service>/<path> (or a path for a gateway)")
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    return parts.hostname.lower(), target


# --- the decisions ------------------------------------------------------------------------------


def explain(configs: Mapping[str, SidecarConfig], request: Request) -> Explanation:
    caller = configs.get(request.source)
    if caller is None:
        known = ", ".join(sorted(configs)) or "none"
        raise ExplainError(f"no sidecar named {request.source!r} (known: {known})")
    method = request.method.upper()
    host, target = _split_url(request.url)
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


def _answers_itself(result: Explanation, rule: RouteRule | GatewayRule, target: str, host: str) -> bool:
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


def _faults(result: Explanation, rule: RouteRule) -> None:
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


# --- text --------------------------------------------------------------------------------------


def _percent(p: float) -> str:
    return f"{p * 100:.4g}%"


def text_report(exp: Explanation) -> str:
    rows: list[tuple[str, str]] = [("request", f"{exp.method} {exp.url} from {exp.source}")]
    if exp.gateway_rule:
        rows.append(("gateway rule", exp.gateway_rule))
    if exp.destination:
        rows.append(("destination", exp.destination))
    rows.append(("rule", f"{exp.rule} (matched {exp.matched})" if exp.rule else "none"))
    if exp.split and exp.split != exp.backends:  # the weights, when this request does not use them all
        rows.append(("split", ", ".join(f"{backend_name(b)} {_percent(p)}" for b, p in exp.split)))
    if exp.backends:
        rows.append(("backends", ", ".join(f"{backend_name(b)} {_percent(p)}" for b, p in exp.backends)))
    if exp.sticky:
        who = f"this user ({exp.sticky_key}) gets" if exp.sticky_key else "no key in the request"
        chosen = f" {backend_name(exp.backend)}" if exp.sticky_key and exp.backend else ""
        rows.append(("sticky", f"{exp.sticky}: {who}{chosen}"))
    rule = exp.rule_obj
    if rule is not None:
        rows.append(("timeout", words.duration(rule.timeout_ms)))
        r = rule.retries
        retry = (
            "none"
            if not r.attempts
            else (
                f"{r.attempts} on {', '.join(r.on) or 'nothing'}"
                + (f", per try {words.duration(r.per_try_timeout_ms)}" if r.per_try_timeout_ms else "")
            )
        )
        rows.append(("retries", retry))
        rows.append(("fault", words.fault(rule.fault)))
        if rule.mirror:
            rows.append(("mirror", words.mirror(rule.mirror, exp.destination)))
        if rule.rewrite:
            rows.append(("rewrite", f"{exp.upstream_host or ''}{exp.upstream_target}"))
        if rule.request_headers != HeaderOps():
            rows.append(("request headers", words.header_ops(rule.request_headers)))
        if rule.response_headers != HeaderOps():
            rows.append(("response headers", words.header_ops(rule.response_headers)))
    rows.append(("access", f"{exp.access} ({exp.access_reason})" if exp.access_reason else exp.access))
    outcome = (
        f"sidecar answers {exp.status}" + (f" [{','.join(exp.flags)}]" if exp.flags else "")
        if exp.status is not None
        else "forwarded"
    )
    rows.append(("result", outcome))
    rows += [("note", note) for note in exp.notes]
    width = max(len(k) for k, _ in rows) + 1
    return "".join(f"{k + ':':<{width}} {v}\n" for k, v in rows)
