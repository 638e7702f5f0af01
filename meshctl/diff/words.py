"""Compiled values in a reviewer's words: `2s` not `2000`, `perTryTimeout` not `per_try_timeout_ms`.

The compiled format is precise but reads like a machine's; these helpers turn its pieces back
into the vocabulary of the YAML the reviewer wrote.
"""

from __future__ import annotations

from typing import Any

from meshctl.contract import (
    CompiledAccessRule,
    CompiledBackend,
    CompiledDirectResponse,
    CompiledFault,
    CompiledHeaderOps,
    CompiledMirror,
    CompiledRedirect,
    CompiledRewrite,
    CompiledSticky,
    CompiledStringMatch,
    RequestMatch,
)

SPIFFE = "spiffe://"


def duration(ms: int | float | None) -> str:
    """2000 -> "2s", 90000 -> "90s", 250 -> "250ms", None -> "none"."""
    if ms is None:
        return "none"
    ms = int(ms)
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def field_name(name: str) -> str:
    """per_try_timeout_ms -> perTryTimeout (the YAML spelling)."""
    name = name.removesuffix("_ms")
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def percent(value: float) -> str:
    return f"{value:g}%"


def who(identity: str) -> str:
    """spiffe://shop.local/service/reviews -> reviews; .../gateway/public -> gateway/public."""
    if not identity.startswith(SPIFFE):
        return identity
    _, _, path = identity[len(SPIFFE) :].partition("/")
    return path.removeprefix("service/")


def string_match(name: str, match: CompiledStringMatch) -> str:
    if match.present is not None:
        return f"{name} {'present' if match.present else 'absent'}"
    if match.exact is not None:
        return f"{name} = {match.exact}"
    if match.prefix is not None:
        return f"{name} prefix {match.prefix}"
    if match.segment_prefix is not None:
        return f"{name} under {match.segment_prefix}"
    if match.regex is not None:
        return f"{name} ~ /{match.regex}/"
    return f"{name} any"


def request_match(match: RequestMatch) -> str:
    parts = []
    if match.path is not None:
        parts.append(string_match("path", match.path))
    if match.methods:
        parts.append("method " + "|".join(match.methods))
    parts += [string_match(f"header {k}", v) for k, v in sorted(match.headers.items())]
    parts += [string_match(f"query {k}", v) for k, v in sorted(match.query.items())]
    if match.source_versions:
        parts.append("caller version " + "|".join(match.source_versions))
    return " and ".join(parts) or "any request"


def matches(items: tuple[RequestMatch, ...]) -> str:
    if not items:
        return "any request"
    return " or ".join(f"({request_match(m)})" if len(items) > 1 else request_match(m) for m in items)


def backend_label(backend: CompiledBackend, service: str | None) -> str:
    """A backend named as short as is clear: "v2" for a version of the route's own service."""
    if backend.service == service:
        return backend.version or "all versions"
    return f"{backend.service}/{backend.version}" if backend.version else backend.service


def backends(items: tuple[CompiledBackend, ...], service: str | None) -> str:
    return ", ".join(f"{backend_label(b, service)} {b.weight}" for b in items) or "none"


def fault(value: CompiledFault | None) -> str:
    if value is None:
        return "none"
    parts = []
    if value.delay is not None:
        parts.append(f"delay {duration(value.delay.fixed_ms)} for {percent(value.delay.percent)}")
    if value.abort is not None:
        grpc = f" (gRPC {value.abort.grpc_status})" if value.abort.grpc_status is not None else ""
        parts.append(f"abort {value.abort.status}{grpc} for {percent(value.abort.percent)}")
    return ", ".join(parts) or "none"


def mirror(value: CompiledMirror | None, service: str | None) -> str:
    if value is None:
        return "none"
    target = CompiledBackend(service=value.service, version=value.version, weight=0)
    return f"{backend_label(target, service)} at {percent(value.percent)}"


def rewrite(value: CompiledRewrite | None) -> str:
    if value is None:
        return "none"
    parts = []
    if value.path_prefix is not None:
        parts.append(f"path prefix -> {value.path_prefix}")
    if value.full_path is not None:
        parts.append(f"path -> {value.full_path}")
    if value.regex is not None:
        parts.append(f"path /{value.regex.pattern}/ -> {value.regex.substitution}")
    if value.host is not None:
        parts.append(f"host -> {value.host}")
    return ", ".join(parts) or "none"


def redirect(value: CompiledRedirect | None) -> str:
    if value is None:
        return "none"
    scheme = f"{value.scheme}://" if value.scheme else ""
    port = f":{value.port}" if value.port else ""
    target = f"{scheme}{value.host or ''}{port}{value.path or ''}" or "same location"
    return f"{value.status} to {target}"


def respond(value: CompiledDirectResponse | None) -> str:
    if value is None:
        return "none"
    body = f" {value.body[:40]!r}" if value.body else ""
    return f"status {value.status}{body}"


def sticky(value: CompiledSticky | None) -> str:
    if value is None:
        return "none"
    if value.header is not None:
        return f"by header {value.header}"
    if value.cookie is not None:
        return f"by cookie {value.cookie.name} (ttl {duration(value.cookie.ttl_ms)})"
    return "none"


def header_ops(value: CompiledHeaderOps) -> str:
    parts = [f"set {k}: {v}" for k, v in sorted(value.set.items())]
    parts += [f"add {k}: {v}" for k, v in sorted(value.add.items())]
    parts += [f"remove {k}" for k in value.remove]
    return ", ".join(parts) or "none"


def access_rule(rule: CompiledAccessRule) -> str:
    if rule.sources is None:
        src = "anyone"
    else:
        src = ", ".join("any mesh service" if s == "*" else who(s) for s in rule.sources)
    parts = [f"from {src}"]
    if rule.methods:
        parts.append("|".join(rule.methods))
    if rule.paths:
        parts.append("on " + ", ".join(rule.paths))
    return " ".join(parts)


def scalar(key: str, value: Any) -> str:
    """A leaf of the compiled JSON, in words (durations for *_ms keys, lists joined)."""
    if value is None:
        return "none"
    if key.endswith("_ms") and isinstance(value, int | float):
        return duration(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
