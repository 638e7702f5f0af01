"""CORS at the edge (as Envoy's CORS filter): preflights answered, headers added to responses.

Pure functions of the policy and the request headers. An origin the policy does not allow gets
no CORS headers at all (the browser then refuses the response); its preflight is answered
403 at the edge, so the application never sees it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from meshctl.contract import CompiledCors, CompiledStringMatch


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _matches(match: CompiledStringMatch, origin: str) -> bool:
    if match.exact is not None:
        return origin == match.exact
    if match.prefix is not None:
        return origin.startswith(match.prefix)
    if match.regex is not None:
        return _regex(match.regex).fullmatch(origin) is not None
    return False


def allowed_origin(policy: CompiledCors, headers: Mapping[str, str]) -> str | None:
    """The request's Origin when the policy allows it, else None."""
    origin = headers.get("origin")
    if not origin:
        return None
    return origin if any(_matches(m, origin) for m in policy.allow_origins) else None


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    return method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers


def preflight_headers(policy: CompiledCors, origin: str) -> dict[str, str]:
    out = _common(policy, origin)
    if policy.allow_methods:
        out["access-control-allow-methods"] = ",".join(policy.allow_methods)
    if policy.allow_headers:
        out["access-control-allow-headers"] = ",".join(policy.allow_headers)
    if policy.max_age_s is not None:
        out["access-control-max-age"] = str(policy.max_age_s)
    return out


def response_headers(policy: CompiledCors, origin: str) -> dict[str, str]:
    out = _common(policy, origin)
    if policy.expose_headers:
        out["access-control-expose-headers"] = ",".join(policy.expose_headers)
    return out


def _common(policy: CompiledCors, origin: str) -> dict[str, str]:
    out = {"access-control-allow-origin": origin, "vary": "Origin"}
    if policy.allow_credentials:
        out["access-control-allow-credentials"] = "true"
    return out
