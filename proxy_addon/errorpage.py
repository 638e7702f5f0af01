"""mitmproxy's own error pages, replaced by the sidecar's flagged JSON answer.

mitmproxy answers by itself when a request it forwards natively (a streamed request) cannot
reach its upstream, or when a client sends malformed HTTP: an HTML page naming mitmproxy and
the error text, which carries internal addresses ("Connect call failed ('127.0.0.1', 41234)").
A sidecar's own answers must carry `x-mesh-response-flags` and never leak addresses, so the
page builder of mitmproxy's HTTP/1 layer is swapped for ours when the sidecar starts (the patch
is in `proxy_addon.patches`).
"""

from __future__ import annotations

from proxy_addon import patches
from proxy_addon.responses import flag_response


def error_flags(status: int, message: str) -> list[str]:
    """Envoy's response flag for mitmproxy's error: the status and the error text tell it."""
    if status == 502:
        return ["UF"] if "connect" in message.lower() or "refused" in message.lower() else ["UC"]
    if status == 504:
        return ["UT"]
    if status == 400:
        return ["DPE"]  # downstream protocol error: the client's request was malformed
    return []


def sidecar_error_response(status_code: int, message: str = "") -> bytes:
    response = flag_response(status_code, error_flags(status_code, message), close=True)
    return patches.assemble_response(response)


def install_error_pages() -> None:
    patches.install_error_pages(sidecar_error_response)
