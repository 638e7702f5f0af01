"""Cleartext HTTP/2 (h2c, prior knowledge) for mitmproxy 12: every use of its internals is here.

mitmproxy 12 speaks HTTP/2 only after TLS ALPN negotiated `h2`: its HTTP layer picks the
HTTP/2 server (client side) and client (server side) by `connection.alpn`, and its NextLayer
addon treats the prior-knowledge preface `PRI * HTTP/2.0` as a malformed HTTP/1 request.
(Upstream: mitmproxy issue #3362; pull request #8127 adds the same two switches.)

Two switches make h2c work without patching mitmproxy:

- `MeshNextLayer` (replaces mitmproxy's NextLayer addon): on a listener that `h2c_listener`
  accepts, a client whose first bytes are the preface gets an HTTP layer with
  `client.alpn = b"h2"`, so `HttpLayer` starts its HTTP/2 server. This covers a connection
  that starts with the preface (a reverse listener, or h2c sent straight to the explicit
  proxy) and a CONNECT tunnel (`grpc_proxy`) whose first bytes are the preface.
- `mark_h2c(server)` in a `server_connect` hook: a plaintext upstream connection with
  `alpn = b"h2"` makes `HttpClient` start its HTTP/2 client (prior knowledge).

Two wrappers (`install_stream_recovery`) let a call whose upstream stream was refused be sent
again, as Envoy's `refused-stream` retry does:

- `Http2Client.handle_h2_event`: a GOAWAY ends only the streams above its last-stream-id as
  refused (`REFUSED_MESSAGE`), before mitmproxy ends the rest as it always did. nghttp2 (Envoy's
  codec) closes exactly those streams with REFUSED_STREAM; mitmproxy ends them all alike.
- `HttpStream.handle_protocol_error`: when the upstream fails a stream whose response has not
  started, the `error` hook sees `flow.metadata[ANSWERABLE]` ("complete": the request has ended;
  "partial": it is still streaming); one that sets `flow.response` and clears `flow.error`
  answers the client with it (the `response` hook runs as for any answer) instead of the error.
  Otherwise the error goes on exactly as in mitmproxy.

The version guard refuses other mitmproxy major versions, and tests/grpc/test_h2c_internals.py
fails when the source of any mitmproxy function this relies on changes (see FINGERPRINTS).
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable

import h2.events
from mitmproxy import connection
from mitmproxy import flow as mflow
from mitmproxy.addons import next_layer
from mitmproxy.proxy import layer
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers import HttpLayer, modes
from mitmproxy.proxy.layers.http import (
    DropStream,
    HttpErrorHook,
    HTTPMode,
    HttpStream,
    ResponseProtocolError,
    SendHttp,
)
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._http2 import Http2Client
from mitmproxy.version import VERSION

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2 = b"h2"

SUPPORTED_MAJOR = "12."
if not VERSION.startswith(SUPPORTED_MAJOR):  # pragma: no cover - guarded by the pin
    raise ImportError(
        f"proxy_addon.h2c supports mitmproxy {SUPPORTED_MAJOR}x only, found {VERSION}: "
        "check the functions in FINGERPRINTS against the new version"
    )


def _internals() -> dict[str, Callable[..., object]]:
    from mitmproxy.proxy.layers.http import HttpClient

    return {
        # what the two stream-recovery wrappers replace or call
        "HttpStream.handle_protocol_error": _ORIGINAL_PROTOCOL_ERROR,
        "HttpStream.check_killed": HttpStream.check_killed,
        "HttpStream.send_response": HttpStream.send_response,
        "Http2Client.handle_h2_event": _ORIGINAL_H2_EVENT,
        "Http2Connection.close_connection": Http2Client.close_connection,
        # decides the client-side protocol from client.alpn at Start
        "HttpLayer._handle_event": HttpLayer._handle_event,
        # decides the server-side protocol from server.alpn once connected
        "HttpClient._handle_event": HttpClient._handle_event,
        # reuses connections; refuses h2 -> h1 reuse by alpn
        "HttpLayer.get_connection": HttpLayer.get_connection,
        # what MeshNextLayer defers to for everything that is not h2c
        "NextLayer._next_layer": next_layer.NextLayer._next_layer,
        "NextLayer.next_layer": next_layer.NextLayer.next_layer,
    }


def fingerprint(func: Callable[..., object]) -> str:
    return hashlib.sha256(inspect.getsource(func).encode()).hexdigest()[:16]


# sha256 (first 16 hex digits) of each function's source in mitmproxy 12.3.1.
FINGERPRINTS = {
    "HttpStream.handle_protocol_error": "59fc3b2eeeabf63a",
    "HttpStream.check_killed": "368cad352d1e82b6",
    "HttpStream.send_response": "d581bc106152e369",
    "Http2Client.handle_h2_event": "ff6f4bd9271693b8",
    "Http2Connection.close_connection": "44b76ed198e7916a",
    "HttpLayer._handle_event": "6ba31883cc7a06b3",
    "HttpClient._handle_event": "bc1cae775a49a4fe",
    "HttpLayer.get_connection": "1aa1c63e3175766c",
    "NextLayer._next_layer": "ed22cb84e2f72df2",
    "NextLayer.next_layer": "d277fef31bbe9519",
}


def changed_internals() -> list[str]:
    """Names of the relied-on mitmproxy functions whose source differs from FINGERPRINTS."""
    return [name for name, func in _internals().items() if fingerprint(func) != FINGERPRINTS[name]]


class MeshNextLayer(next_layer.NextLayer):
    """mitmproxy's NextLayer plus prior-knowledge HTTP/2 on the listeners `h2c_listener` allows."""

    name = "nextlayer"  # mitmproxy's proxyserver looks its next-layer addon up by this name

    def __init__(self, h2c_listener: Callable[[Context], bool]) -> None:
        super().__init__()
        self._h2c_listener = h2c_listener

    def _next_layer(
        self, context: Context, data_client: bytes, data_server: bytes
    ) -> layer.Layer | None:
        if (
            context.client.transport_protocol == "tcp"
            and not context.client.tls  # inside TLS, ALPN already decided
            and self._h2c_listener(context)
        ):
            if data_client.startswith(PREFACE):
                context.client.alpn = H2
                # The explicit proxy's first layer: requests carry their :authority.
                first = len(context.layers) == 1 and isinstance(context.layers[0], modes.HttpProxy)
                return HttpLayer(context, HTTPMode.regular if first else HTTPMode.transparent)
            if PREFACE.startswith(data_client):
                raise next_layer.NeedsMoreData  # the preface came in pieces: wait for the rest
        return super()._next_layer(context, data_client, data_server)


def mark_h2c(server: connection.Server) -> None:
    """Call from `server_connect` for a plaintext connection that must speak HTTP/2."""
    if not server.tls:
        server.alpn = H2


def client_speaks_h2(client: connection.Client) -> bool:
    return client.alpn == H2


# --- refused streams: retried by the addon -----------------------------------------------------

REFUSED_MESSAGE = "stream refused by the upstream (REFUSED_STREAM)"
_ORIGINAL_PROTOCOL_ERROR = HttpStream.handle_protocol_error
_ORIGINAL_H2_EVENT = Http2Client.handle_h2_event
installed = False  # `error` hooks may answer (see the module docstring)
# In `flow.metadata` during an `error` hook that may answer: "complete" when the request has
# ended (its body is known), "partial" when it is still streaming.
ANSWERABLE = "meshctl.answerable"


def refused(message: str) -> bool:
    """The upstream never processed the stream: RST_STREAM(REFUSED_STREAM) or above a GOAWAY."""
    return "REFUSED_STREAM" in message


def _h2_event(self: Http2Client, event: h2.events.Event) -> layer.CommandGenerator[bool]:
    if isinstance(event, h2.events.ConnectionTerminated) and event.last_stream_id is not None:
        for stream_id in [s for s in self.streams if s > event.last_stream_id]:
            yield ReceiveHttp(self.ReceiveProtocolError(stream_id, REFUSED_MESSAGE, self.ReceiveProtocolError.code))
            del self.streams[stream_id]
    return (yield from _ORIGINAL_H2_EVENT(self, event))


def _protocol_error(self: HttpStream, event: object) -> layer.CommandGenerator[None]:
    request_done = self.client_state == self.state_done
    answerable = (
        isinstance(event, ResponseProtocolError)
        and (request_done or self.client_state == self.state_stream_request_body)
        and self.server_state == self.state_wait_for_response_headers
    )
    if not answerable:
        return (yield from _ORIGINAL_PROTOCOL_ERROR(self, event))  # type: ignore[arg-type]
    assert isinstance(event, ResponseProtocolError)
    self.flow.error = mflow.Error(event.message)
    self.flow.metadata[ANSWERABLE] = "complete" if request_done else "partial"
    yield HttpErrorHook(self.flow)
    del self.flow.metadata[ANSWERABLE]
    if self.flow.error is None and self.flow.response is not None:
        # An answer instead of the error. A request still streaming goes on to the failed
        # upstream stream, where mitmproxy drops it; its end then ends the flow.
        yield from self.send_response()
        return None
    # mitmproxy's own path from here (its error hook already ran)
    if (yield from self.check_killed(False)):
        return None
    yield SendHttp(event, self.context.client)
    self.server_state = self.state_errored
    self.flow.live = False
    yield DropStream(self.stream_id)
    return None


def install_stream_recovery() -> None:
    global installed
    if installed or changed_internals():
        return  # another mitmproxy: refused calls fail as mitmproxy fails them
    HttpStream.handle_protocol_error = _protocol_error  # type: ignore[method-assign,assignment]
    Http2Client.handle_h2_event = _h2_event  # type: ignore[method-assign]
    installed = True
