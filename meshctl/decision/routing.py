"""Route decisions as pure functions of (request view, compiled config).

The sidecar and `meshctl explain` call the same functions, so what `explain` prints is what the
sidecar does. Nothing here imports mitmproxy or does I/O.

Public API:
- `RequestView(method, path, query, headers, cookies)` and `view_from_target(method, target,
  headers)`: the parts of a request that routing looks at (header names lower-case).
- `match_rule(rules, view) -> (rule, match) | None`: first rule whose matches hold (a rule
  without matches always holds); `match` is the `RequestMatch` entry that held, or None.
- `backend_probabilities(backends) -> list[(Backend, float)]`: each backend's share, 0..1.
- `pick_weighted(backends, u)`: weighted choice with `u` uniform in [0, 1).
- `sticky_key(sticky, view) -> str | None`: the user's key (header or cookie value).
- `pick_sticky(backends, key)`: weighted rendezvous hashing: one key always gets one backend
  while the weights hold; a weight change moves only the users it has to.
- `rendezvous_index(n, key, salt)`: stable choice among n equal items (hash load balancing).
- `rewritten_path(path, rewrite, match)`, `redirect_location(redirect, view, host)`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

from meshctl.contract import (
    CompiledBackend,
    CompiledRedirect,
    CompiledRewrite,
    CompiledSticky,
    CompiledStringMatch,
    RequestMatch,
)
from meshctl.decision.claims import claim_value
from meshctl.regex import full_match, substitute


@dataclass(frozen=True, slots=True)
class RequestView:
    method: str
    path: str  # without the query string
    query: Mapping[str, str] = field(default_factory=dict)  # first value of each parameter
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    cookies: Mapping[str, str] = field(default_factory=dict)
    source_version: str | None = None  # the calling sidecar's own version (match.from: svc/v2)
    claims: Mapping[str, Any] = field(default_factory=dict)  # of a token a gateway verified


def parse_cookies(header: str) -> dict[str, str]:
    """The name=value pairs of a Cookie header; malformed pieces are skipped."""
    out: dict[str, str] = {}
    for piece in header.split(";"):
        name, sep, value = piece.strip().partition("=")
        if sep and name and name not in out:
            out[name] = value.strip().strip('"')
    return out


def view_from_target(
    method: str, target: str, headers: Mapping[str, str], source_version: str | None = None
) -> RequestView:
    """Build a view from an origin-form target (`/path?query`) and lower-cased headers."""
    path, _, raw_query = target.partition("?")
    query: dict[str, str] = {}
    if raw_query:
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            query.setdefault(key, value)
    cookie_header = headers.get("cookie")
    cookies = parse_cookies(cookie_header) if cookie_header else {}
    return RequestView(method.upper(), path or "/", query, headers, cookies, source_version)


def string_matches(match: CompiledStringMatch, value: str | None) -> bool:
    if match.present is not None:
        return (value is not None) == match.present
    if value is None:
        return False
    if match.exact is not None:
        return value == match.exact
    if match.prefix is not None:
        return value.startswith(match.prefix)
    if match.segment_prefix is not None:
        return segment_prefix_holds(match.segment_prefix, value)
    if match.regex is not None:
        return full_match(match.regex, value)  # RE2: linear time, whatever the request
    return True


def segment_prefix_holds(prefix: str, path: str) -> bool:
    """Gateway API PathPrefix: element-wise, so /v2 holds for /v2, /v2/ and /v2/x, not /v2x
    (a trailing slash in the prefix is ignored)."""
    base = prefix.rstrip("/")
    return not base or path == base or path.startswith(base + "/")
def claim_matches(match: CompiledStringMatch, claims: Mapping[str, Any], name: str) -> bool:
    """A list claim (e.g. groups) matches when one of its values does; no token, no claim."""
    value = claim_value(claims, name)
    if isinstance(value, list):
        if match.present is not None:
            return match.present
        return any(string_matches(match, item) for item in value)
    return string_matches(match, value)


def request_matches(match: RequestMatch, view: RequestView) -> bool:
    if match.methods and view.method not in match.methods:
        return False
    if match.source_versions and view.source_version not in match.source_versions:
        return False
    if match.path is not None and not string_matches(match.path, view.path):
        return False
    for name, cond in match.headers.items():
        if not string_matches(cond, view.headers.get(name)):
            return False
    for name, cond in match.query.items():
        if not string_matches(cond, view.query.get(name)):
            return False
    for name, cond in match.claims.items():
        if not claim_matches(cond, view.claims, name):
            return False
    return True


class HasMatches(Protocol):
    @property
    def matches(self) -> tuple[RequestMatch, ...]: ...


def match_rule[R: HasMatches](
    rules: Sequence[R], view: RequestView
) -> tuple[R, RequestMatch | None] | None:
    for rule in rules:
        if not rule.matches:
            return rule, None
        for match in rule.matches:
            if request_matches(match, view):
                return rule, match
    return None


def backend_probabilities(backends: Sequence[CompiledBackend]) -> list[tuple[CompiledBackend, float]]:
    total = sum(max(b.weight, 0) for b in backends)
    if total <= 0:
        share = 1.0 / len(backends) if backends else 0.0
        return [(b, share) for b in backends]
    return [(b, max(b.weight, 0) / total) for b in backends]


def pick_weighted(backends: Sequence[CompiledBackend], u: float) -> CompiledBackend:
    """Weighted choice; `u` is uniform in [0, 1)."""
    total = sum(max(b.weight, 0) for b in backends)
    if total <= 0:
        return backends[int(u * len(backends)) % len(backends)]
    point = u * total
    for backend in backends:
        point -= max(backend.weight, 0)
        if point < 0:
            return backend
    return backends[-1]


def sticky_key(sticky: CompiledSticky | None, view: RequestView) -> str | None:
    if sticky is None:
        return None
    if sticky.header is not None:
        value = view.headers.get(sticky.header.lower())
        return value or None
    if sticky.cookie is not None:
        return view.cookies.get(sticky.cookie.name) or None
    return None


def _unit_hash(key: str, salt: str) -> float:
    """A stable number in (0, 1) from key and salt."""
    digest = hashlib.blake2b(f"{key}\x00{salt}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


def backend_id(backend: CompiledBackend) -> str:
    return f"{backend.service}/{backend.version or '*'}"


def pick_sticky(backends: Sequence[CompiledBackend], key: str) -> CompiledBackend:
    """Weighted rendezvous hashing (score = -ln(h) / weight, lowest wins).

    Each backend's score depends only on the key and that backend, so changing one weight only
    moves users to or from that backend; the share each backend gets equals its weight share.
    """
    best: CompiledBackend | None = None
    best_score = math.inf
    for backend in backends:
        if backend.weight <= 0:
            continue
        score = -math.log(_unit_hash(key, backend_id(backend))) / backend.weight
        if score < best_score:
            best, best_score = backend, score
    return best if best is not None else backends[0]


def rendezvous_index(items: Sequence[str], key: str) -> int:
    """Index of the item with the highest hash for key: stable as items come and go."""
    best, best_score = 0, -1.0
    for index, item in enumerate(items):
        score = _unit_hash(key, item)
        if score > best_score:
            best, best_score = index, score
    return best


def rewritten_path(target: str, rewrite: CompiledRewrite | None, match: RequestMatch | None) -> str:
    """Apply a path rewrite to an origin-form target (query kept), as Envoy does for Istio's
    `rewrite.uri` and the Gateway API's URLRewrite:

    - `full_path`: the whole path is replaced (ReplaceFullPath).
    - `regex`: every match of the pattern is substituted (Istio's uriRegexRewrite).
    - `path_prefix` after an exact path match: the whole (matched) path is replaced.
    - `path_prefix` after a prefix or segment-prefix match: the matched prefix is replaced.
    - `path_prefix` otherwise: the new prefix is put in front of the whole path.
    """
    if rewrite is None or (rewrite.path_prefix is None and rewrite.full_path is None and rewrite.regex is None):
        return target
    path, sep, query = target.partition("?")
    if rewrite.full_path is not None:
        return rewrite.full_path + sep + query
    if rewrite.regex is not None:
        new_path = substitute(rewrite.regex.pattern, rewrite.regex.substitution, path)
        return (new_path or "/") + sep + query
    assert rewrite.path_prefix is not None
    cond = match.path if match is not None else None
    if cond is not None and cond.exact is not None and path == cond.exact:
        return rewrite.path_prefix + sep + query
    matched = None
    if cond is not None:
        matched = cond.prefix if cond.prefix is not None else cond.segment_prefix
        if cond.segment_prefix is not None:
            matched = cond.segment_prefix.rstrip("/")
    if matched and path.startswith(matched):
        rest = path[len(matched):]
    else:
        rest = path
    new_prefix = rewrite.path_prefix
    if new_prefix.endswith("/") and rest.startswith("/"):
        rest = rest[1:]
    elif rest and not rest.startswith("/") and not new_prefix.endswith("/"):
        rest = "/" + rest
    new_path = (new_prefix + rest) or "/"
    return new_path + sep + query


_DEFAULT_PORTS = {"http": 80, "https": 443}


def redirect_location(redirect: CompiledRedirect, target: str, host: str, scheme: str = "http") -> str:
    """The Location of a redirect. A new scheme or port replaces the request's port; a port
    that is the scheme's well-known one is left out (as Envoy and the Gateway API do)."""
    path = redirect.path if redirect.path is not None else target
    new_scheme = redirect.scheme or scheme
    authority = redirect.host or host
    if redirect.scheme is not None or redirect.port is not None:
        name = authority.rsplit(":", 1)[0] if not authority.endswith("]") else authority
        port = redirect.port
        authority = name if port is None or port == _DEFAULT_PORTS.get(new_scheme) else f"{name}:{port}"
    return f"{new_scheme}://{authority}{path}"
