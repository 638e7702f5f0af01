"""A test app for tracing: answers GET /, calls $NEXT through its sidecar, reports what it saw.

With APP_SPAN=1 it records a span of its own under the sidecar's (the traceparent it
received) and passes that span on as the parent of its call, as an instrumented app does;
the span goes to $OTLP as OTLP/HTTP protobuf. It forwards trace, request id and B3 headers.
Standard library plus opentelemetry-proto only, so it runs with the sidecar's interpreter.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

SERVICE = os.environ.get("SERVICE", "app")
NEXT = os.environ.get("NEXT", "")
APP_SPAN = os.environ.get("APP_SPAN") == "1"
OTLP = os.environ.get("OTLP", "")
PROPAGATED = ("x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "b3",
              "end-user")
PROXY = urllib.request.ProxyHandler({"http": os.environ.get("HTTP_PROXY", "")})
OPENER = urllib.request.build_opener(PROXY)


def export_span(trace_id: str, span_id: str, parent: str, start: int, end: int) -> None:
    span = Span(trace_id=bytes.fromhex(trace_id), span_id=bytes.fromhex(span_id),
                parent_span_id=bytes.fromhex(parent), name=f"{SERVICE} handler",
                kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=start, end_time_unix_nano=end)
    body = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=f"{SERVICE}-app"))]),
        scope_spans=[ScopeSpans(spans=[span])])]).SerializeToString()
    request = urllib.request.Request(OTLP + "/v1/traces", data=body, method="POST",
                                     headers={"content-type": "application/x-protobuf"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=5) as resp:
        resp.read()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/healthz":
            return self._send(200, {"ok": True})
        start = time.time_ns()
        incoming = self.headers.get("traceparent", "")
        parts = incoming.split("-")
        traceparent, app_span = incoming, None
        if APP_SPAN and len(parts) == 4:
            app_span = f"{random.getrandbits(64):016x}"
            traceparent = f"00-{parts[1]}-{app_span}-{parts[3]}"
        seen = {"service": SERVICE, "traceparent": incoming,
                **{h: self.headers.get(h) for h in PROPAGATED}}
        chain = [seen]
        status = 200
        if NEXT:
            headers = {h: v for h in PROPAGATED if (v := self.headers.get(h)) is not None}
            if traceparent:
                headers["traceparent"] = traceparent
            try:
                with OPENER.open(urllib.request.Request(f"http://{NEXT}/", headers=headers), timeout=10) as resp:
                    chain += json.loads(resp.read())["chain"]
            except OSError as exc:
                status, chain = 502, chain + [{"error": str(exc)}]
        if app_span is not None and OTLP:
            try:
                export_span(parts[1], app_span, parts[2], start, time.time_ns())
            except OSError:
                pass  # the collector may be down in a test: the answer still goes out
        self._send(status, {"chain": chain})

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
