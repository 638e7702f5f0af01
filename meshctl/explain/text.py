"""An explanation as aligned `name: value` rows, for people."""

from __future__ import annotations

from meshctl.contract import CompiledHeaderOps
from meshctl.diff import words
from meshctl.explain.result import Explanation, backend_name, connection_words


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
        if not r.attempts:
            retry = "none"
        elif exp.status is None and not exp.retry_attempts:
            retry = f"none for this request (the rule's {r.attempts} do not apply)"
        else:
            retry = f"{r.attempts} on {', '.join(r.on) or 'nothing'}" + (
                f", per try {words.duration(r.per_try_timeout_ms)}" if r.per_try_timeout_ms else ""
            )
        rows.append(("retries", retry))
        rows.append(("fault", words.fault(rule.fault)))
        if rule.mirror:
            rows.append(("mirror", words.mirror(rule.mirror, exp.destination)))
        if rule.rewrite:
            rows.append(("rewrite", f"{exp.upstream_host or ''}{exp.upstream_target}"))
        if rule.request_headers != CompiledHeaderOps():
            rows.append(("request headers", words.header_ops(rule.request_headers)))
        if rule.response_headers != CompiledHeaderOps():
            rows.append(("response headers", words.header_ops(rule.response_headers)))
    rows.append(("access", f"{exp.access} ({exp.access_reason})" if exp.access_reason else exp.access))
    outcome = (
        f"sidecar answers {exp.status}" + (f" [{','.join(exp.flags)}]" if exp.flags else "")
        if exp.status is not None
        else "forwarded"
    )
    rows.append(("result", outcome))
    rows.append(("connection", f"{exp.listener}: {connection_words(exp.connections)}"))
    rows += [("note", note) for note in exp.notes]
    width = max(len(k) for k, _ in rows) + 1
    return "".join(f"{k + ':':<{width}} {v}\n" for k, v in rows)
