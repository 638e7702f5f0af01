"""What `meshctl explain` is asked (a question) and what it answers (an explanation)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from meshctl.contract import CompiledBackend, CompiledRouteRule, ConnectionLimits
from meshctl.decision import Decision
from meshctl.diff import words
from meshctl.errors import UsageError


class ExplainError(UsageError):
    """The question cannot be asked: unknown caller, malformed URL or header."""


@dataclass(frozen=True)
class Question:
    source: str  # sidecar name: "productpage" or "gateway/public"
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Explanation:
    """A caller sidecar's Decision (and the access verdicts of the services it may reach) in words."""

    source: str
    method: str
    url: str
    decision: Decision | None = None
    destination: str | None = None  # the service whose route applies
    gateway_rule: str | None = None
    rule: str | None = None
    matched: str | None = None  # the match entry that held, in words
    status: int | None = None  # when the sidecar answers itself
    flags: list[str] = field(default_factory=list)
    location: str | None = None  # redirect target
    split: list[tuple[CompiledBackend, float]] = field(default_factory=list)  # the rule's weights
    backends: list[tuple[CompiledBackend, float]] = field(default_factory=list)  # for this request
    sticky: str | None = None  # how the sticky key is taken, in words
    sticky_key: str | None = None
    rule_obj: CompiledRouteRule | None = None
    upstream_target: str | None = None  # path after rewrites
    upstream_host: str | None = None
    retry_attempts: int = 0  # retries this request may get (the rule's, unless its method or body rule them out)
    access: str = "allow"
    access_reason: str = ""
    notes: list[str] = field(default_factory=list)
    listener: str = "outbound"  # where the caller's connection enters its sidecar
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)

    @property
    def backend(self) -> CompiledBackend | None:
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
            "retry_attempts": self.retry_attempts if rule else None,
            "fault": rule.fault.model_dump(mode="json") if rule and rule.fault else None,
            "mirror": rule.mirror.model_dump(mode="json") if rule and rule.mirror else None,
            "upstream": {"host": self.upstream_host, "target": self.upstream_target}
            if self.upstream_target is not None
            else None,
            "access": self.access,
            "access_reason": self.access_reason,
            "notes": list(self.notes),
            "listener": self.listener,
            "connections": self.connections.model_dump(mode="json"),
        }


def connection_words(limits: ConnectionLimits) -> str:
    headers = limits.request_headers_timeout_ms
    first = f"request headers within {words.duration(headers)}" if headers is not None \
        else "no request-header timeout"
    return (f"{first}, idle timeout {words.duration(limits.idle_timeout_ms)}, "
            f"at most {limits.max_connections} connections")


def backend_name(backend: CompiledBackend) -> str:
    return f"{backend.service}/{backend.version}" if backend.version else backend.service


def _backend_json(backend: CompiledBackend, probability: float) -> dict[str, Any]:
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


def split_url(url: str) -> tuple[str, str]:
    """(host without port, origin-form target) of an absolute URL, or ("", target) of a path."""
    if url.startswith("/"):
        return "", url
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        hostname = parts.hostname  # parsed lazily: `http://[::1` fails only here
    except ValueError:
        hostname = None
    if hostname is None or parts.scheme not in ("http", "https"):
        raise ExplainError(f"URL {url!r} must be http://<service>/<path> (or a path for a gateway)")
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    return hostname.lower(), target
