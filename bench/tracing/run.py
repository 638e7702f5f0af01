"""Tracing cost: the sidecar with all Istio labels and spans at sampling 1.0, against stock
mitmdump and against the same sidecar with tracing off; and the cost per span of the
OpenTelemetry SDK against the sidecar's own recorder + opentelemetry-proto encoding.

    .venv/bin/python -m bench.tracing.run [--rounds 5] [--seconds 4] [--connections 16]

Throughput ratios are medians of alternating rounds (each round measures both paths back to
back), so background load hits both alike. Spans go to a local OTLP/HTTP sink (a separate
process that accepts and discards), as they would go to a collector.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.dataplane.run import app_mitmdump_sink, proxy_script, realistic_config, wrk
from meshctl.contract import CompiledTelemetry
from tests.support.procs import REPO, bindings_for, free_port, start_sidecar

RESULTS = REPO / "bench" / "results" / "tracing.json"


def per_span_costs(n: int = 20_000) -> dict[str, float]:
    """Microseconds per span on the request path (and amortized encoding), in this process."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource as PbResource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind

    from proxy_addon.tracing import Spans, encode

    def any_value(v: object) -> AnyValue:
        if isinstance(v, bool):
            return AnyValue(bool_value=v)
        if isinstance(v, int):
            return AnyValue(int_value=v)
        return AnyValue(string_value=str(v))

    def encode_with_messages(batch: list, resource: tuple) -> bytes:  # type: ignore[type-arg]
        """The same request built from opentelemetry-proto's message objects."""
        out = [Span(trace_id=bytes.fromhex(t), span_id=bytes.fromhex(s_), parent_span_id=bytes.fromhex(p),
                    name=name, kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=a, end_time_unix_nano=b,
                    attributes=[KeyValue(key=k, value=any_value(v)) for k, v in at], status=Status())
               for _, name, t, s_, p, a, b, _, at in batch]
        return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
            resource=PbResource(attributes=[KeyValue(key=k, value=any_value(v)) for k, v in resource]),
            scope_spans=[ScopeSpans(spans=out)])]).SerializeToString()

    attrs = {"http.request.method": "GET", "url.path": "/products/1", "server.address": "reviews",
             "network.protocol.version": "1.1", "http.response.status_code": 200,
             "meshctl.response_flags": "-", "peer.service": "reviews", "meshctl.route_rule": "default",
             "network.peer.address": "127.0.0.1:9080", "guid:x-request-id": "4c1f...", "user_agent.original": "wrk"}
    # An exporter to a closed port: the SDK's batch thread fails fast, as with a dead collector.
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"http://127.0.0.1:{free_port()}/v1/traces", timeout=1),
        max_queue_size=4096))
    tracer = provider.get_tracer("bench")
    start = time.perf_counter()
    for _ in range(n):
        span = tracer.start_span("GET default", kind=SpanKind.CLIENT, attributes=attrs)
        span.end()
    sdk_us = (time.perf_counter() - start) / n * 1e6
    provider.shutdown()

    spans = Spans(lambda k: None, lambda k: None)
    spans.configure("http://127.0.0.1:9", (("service.name", "bench"),))
    items = list(attrs.items())
    start = time.perf_counter()
    for i in range(n):
        spans.record(("client", "GET default", "4bf92f3577b34da6a3ce929d0e0e4736", f"{i + 1:016x}",
                      "00f067aa0ba902b7", 1, 2, False, items))
        if len(spans._queue) >= 4000:
            spans._queue.clear()
    record_us = (time.perf_counter() - start) / n * 1e6
    batch = [("client", "GET default", "4bf92f3577b34da6a3ce929d0e0e4736", f"{i + 1:016x}",
              "00f067aa0ba902b7", 1, 2, False, items) for i in range(512)]
    start = time.perf_counter()
    for _ in range(20):
        encode(batch, (("service.name", "bench"),))  # type: ignore[arg-type]
    encode_us = (time.perf_counter() - start) / (20 * 512) * 1e6
    start = time.perf_counter()
    for _ in range(20):
        encode_with_messages(batch, (("service.name", "bench"),))
    messages_us = (time.perf_counter() - start) / (20 * 512) * 1e6
    return {"sdk_start_end_us": round(sdk_us, 2), "meshctl_record_us": round(record_us, 2),
            "meshctl_encode_us_per_span": round(encode_us, 2),
            "opentelemetry_proto_messages_us_per_span": round(messages_us, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    costs = per_span_costs()
    print(f"per span: {costs}", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="meshctl-bench-tracing-"))
    procs: list[subprocess.Popen[bytes]] = []
    sidecars = []
    try:
        app, mitm, sink = app_mitmdump_sink(tmp, procs)
        endpoints = {"reviews": {"v1": (f"127.0.0.1:{app}",), "v2": (f"127.0.0.1:{app}",)}}
        base = realistic_config("productpage")
        traced_config = base.model_copy(update={"telemetry": CompiledTelemetry(
            tracing_sampling=1.0, otlp_endpoint=f"http://127.0.0.1:{sink}")})
        traced = start_sidecar(tmp / "traced", traced_config, bindings_for(inbound=False, endpoints=endpoints))
        plain = start_sidecar(tmp / "plain", base, bindings_for(inbound=False, endpoints=endpoints))
        sidecars += [traced, plain]
        script = proxy_script(tmp)
        for url, s in ((f"http://127.0.0.1:{mitm}/", None), (traced.outbound_proxy + "/", script),
                       (plain.outbound_proxy + "/", script)):
            wrk(url, args.connections, 2, s)  # warm-up
        rows: list[dict[str, float]] = []
        for _ in range(args.rounds):
            stock = wrk(f"http://127.0.0.1:{mitm}/", args.connections, args.seconds, None)
            on = wrk(traced.outbound_proxy + "/", args.connections, args.seconds, script)
            off = wrk(plain.outbound_proxy + "/", args.connections, args.seconds, script)
            rows.append({"mitmdump": stock["rps"], "tracing_on": on["rps"], "tracing_off": off["rps"],
                         "on_p50": on["p50"], "off_p50": off["p50"]})
            print(f"  round: {rows[-1]}", file=sys.stderr)
        metrics = traced.metrics()
        exported = next((float(line.split()[-1]) for line in metrics.splitlines()
                         if line.startswith("meshctl_spans_exported_total")), 0.0)
        dropped = next((float(line.split()[-1]) for line in metrics.splitlines()
                        if line.startswith("meshctl_spans_dropped_total")), 0.0)
    finally:
        for sc in sidecars:
            sc.stop()
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
    summary = {
        "per_span": costs,
        "rounds": rows,
        "traced_vs_mitmdump": round(statistics.median(r["tracing_on"] / r["mitmdump"] for r in rows), 2),
        "traced_vs_untraced": round(statistics.median(r["tracing_on"] / r["tracing_off"] for r in rows), 3),
        "spans_exported": exported,
        "spans_dropped": dropped,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
