"""Responses the sidecar makes itself: a flag header and a small JSON body, nothing internal."""

from __future__ import annotations

import json

from mitmproxy import http

from meshctl.decision import Answer

FLAG_HEADER = "x-mesh-response-flags"

_MESSAGES = {
    "NR": "no route",
    "UF": "upstream connect failure",
    "UH": "no healthy upstream",
    "UO": "upstream overflow (circuit breaker)",
    "URX": "upstream retries exhausted",
    "UT": "upstream request timeout",
    "UC": "upstream connection reset",
    "FI": "fault injected",
    "RL": "rate limited",
    "RBAC": "access denied",
    "DC": "proxy draining",
    "DPE": "malformed request",
}


def flag_response(status: int, flags: list[str], close: bool = False) -> http.Response:
    flag_text = ",".join(flags)
    body = json.dumps(
        {"error": _MESSAGES.get(flags[-1] if flags else "", "sidecar error"), "flags": flag_text}
    )
    headers = {"content-type": "application/json", FLAG_HEADER: flag_text}
    if close:
        headers["connection"] = "close"
    return http.Response.make(status, body + "\n", headers)


def answer_response(answer: Answer, flags: list[str]) -> http.Response:
    """The sidecar's own answer: the flagged JSON error (its flags join `flags`), or a redirect
    or direct response."""
    if answer.flags:
        flags.extend(answer.flags)
        return flag_response(answer.status, flags)
    return http.Response.make(answer.status, answer.body.encode(), dict(answer.headers))


def client_wants_close(request: http.Request, headers: dict[str, str] | None = None) -> bool:
    value = (headers if headers is not None else request.headers).get("connection", "")
    if value:
        return "close" in value.lower()
    return request.http_version == "HTTP/1.0"
