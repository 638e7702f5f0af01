"""Spans leave the mesh by OTLP/HTTP (protobuf) into a real receiver, parented hop by hop.

gateway -> frontend -> reviews -> ratings, with the frontend app recording a span of its own
under its sidecar's: one trace, each span the child of the one before. Then the collector dies
and requests go on as before, the lost spans counted.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.runtime.helpers import gateway_port, get, meshctl, wait_until
from tests.support.meshdir import policy_root
from tests.telemetry.prom import free_port

pytestmark = pytest.mark.slow

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class Receiver:
    """An OTLP/HTTP trace receiver: aiohttp on its own loop, protobuf decoded as collectors do."""

    def __init__(self) -> None:
        self.port = free_port()
        self.spans: list[tuple[str, object]] = []  # (resource service.name, Span)
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        assert started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        started.set()
        self.loop.run_forever()

    async def _traces(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        message = ExportTraceServiceRequest.FromString(await request.read())
        with self.lock:
            for rs in message.resource_spans:
                name = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "")
                for ss in rs.scope_spans:
                    self.spans.extend((name, s) for s in ss.spans)
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def trace(self, trace_id: str) -> list[tuple[str, object]]:
        with self.lock:
            return [(n, s) for n, s in self.spans if s.trace_id.hex() == trace_id]  # type: ignore[attr-defined]

    def stop(self) -> None:
        async def down() -> None:
            assert self.runner is not None
            await self.runner.cleanup()
        asyncio.run_coroutine_threadsafe(down(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _service(name: str, port: int, env: dict[str, str]) -> str:
    env_yaml = ", ".join(f"{k}: {v!r}" for k, v in env.items())
    return (f"apiVersion: meshctl/v1alpha1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n"
            f"  port: {port}\n  versions:\n    - name: v1\n      run: [python, traced_app.py]\n"
            f"      env: {{{env_yaml}}}\n---\n")


def _mesh_repo(tmp: Path, otlp: str) -> Path:
    mesh = (
        "apiVersion: meshctl/v1alpha1\nkind: Mesh\nmetadata: {name: traced}\nspec:\n"
        "  trustDomain: traced.local\n  mtls: strict\n"
        f"  telemetry: {{accessLog: json, tracing: {{sampling: 1.0, otlp: '{otlp}'}}}}\n---\n"
        "apiVersion: meshctl/v1alpha1\nkind: Gateway\nmetadata: {name: public}\nspec:\n"
        "  port: 8080\n  rules:\n    - {name: all, match: [{path: {prefix: /}}], service: frontend}\n")
    services = (
        _service("frontend", 9201, {"NEXT": "reviews", "APP_SPAN": "1", "OTLP": otlp})
        + _service("reviews", 9202, {"NEXT": "ratings"})
        + _service("ratings", 9203, {}))
    repo = tmp / "traced"
    repo.mkdir()
    shutil.copy(Path(__file__).parent / "traced_app.py", repo / "traced_app.py")
    return policy_root(repo, {"mesh.yaml": mesh, "services.yaml": services}, commit="a traced chain")


def test_one_trace_parented_hop_by_hop_and_a_dead_collector_costs_nothing(tmp_path: Path) -> None:
    receiver = Receiver()
    otlp = f"http://127.0.0.1:{receiver.port}"
    repo = _mesh_repo(tmp_path, otlp)
    up = meshctl(repo, "up", "--detach", "--gateway-port", "public=0", "--timeout", "150")
    try:
        assert up.code == 0, up.stderr
        port = gateway_port(repo / ".meshctl")
        b3 = {"x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7", "x-b3-spanid": "e457b5a2e4d86bd1",
              "x-b3-sampled": "1"}
        status, body = get("127.0.0.1", port, "/", b3)
        assert status == 200, body
        chain = body["chain"]
        assert [hop["service"] for hop in chain] == ["frontend", "reviews", "ratings"]
        # x-request-id: generated at the gateway, the same at every hop; B3 passed through
        request_id = chain[0]["x-request-id"]
        assert UUID.match(request_id) and {hop["x-request-id"] for hop in chain} == {request_id}
        assert all(hop["x-b3-traceid"] == b3["x-b3-traceid"] for hop in chain)
        trace_id = chain[0]["traceparent"].split("-")[1]
        assert {hop["traceparent"].split("-")[1] for hop in chain} == {trace_id}

        wait_until(lambda: len(receiver.trace(trace_id)) >= 7, timeout=20, what="seven spans exported")
        spans = receiver.trace(trace_id)
        by_parent = {s.parent_span_id.hex(): (n, s) for n, s in spans}  # type: ignore[attr-defined]
        order = []
        parent = ""
        while parent in by_parent:
            name, span = by_parent[parent]
            kind = {1: "internal", 2: "server", 3: "client"}[span.kind]  # type: ignore[attr-defined]
            order.append((name, kind))
            parent = span.span_id.hex()  # type: ignore[attr-defined]
        assert order == [
            ("gateway-public", "server"),
            ("frontend", "server"),
            ("frontend-app", "internal"),  # the app's own span, under its sidecar's
            ("frontend", "client"),
            ("reviews", "server"),
            ("reviews", "client"),
            ("ratings", "server"),
        ], order
        assert len(spans) == 7
        # the hop's span id is what the app received as its parent
        frontend_in = next(s for n, s in spans if n == "frontend" and s.kind == 2)  # type: ignore[attr-defined]
        assert chain[0]["traceparent"].split("-")[2] == frontend_in.span_id.hex()  # type: ignore[attr-defined]
        attrs = {a.key: a.value for a in frontend_in.attributes}  # type: ignore[attr-defined]
        assert attrs["http.request.method"].string_value == "GET"
        assert attrs["http.response.status_code"].int_value == 200
        assert attrs["guid:x-request-id"].string_value == request_id
        client = next(s for n, s in spans if n == "frontend" and s.kind == 3)  # type: ignore[attr-defined]
        cattrs = {a.key: a.value for a in client.attributes}  # type: ignore[attr-defined]
        assert cattrs["peer.service"].string_value == "reviews"
        assert cattrs["meshctl.route_rule"].string_value == "default"
        assert cattrs["network.peer.address"].string_value.startswith("127.0.0.1:")

        # The collector dies: requests are answered as before, the spans are dropped and counted.
        receiver.stop()
        started = time.monotonic()
        for _ in range(30):
            status, _ = get("127.0.0.1", port, "/", timeout=5)
            assert status == 200
        assert time.monotonic() - started < 20

        def dropped() -> float:
            _, metrics = get("127.0.0.1", _admin_port(repo), "/metrics")
            text = metrics.get("raw", "")
            m = re.search(r"^meshctl_spans_dropped_total (\S+)$", text, re.M)
            return float(m.group(1)) if m else 0.0

        wait_until(lambda: dropped() > 0, timeout=15, what="dropped spans counted")
    finally:
        meshctl(repo, "down", timeout=120)
        if receiver.thread.is_alive():
            receiver.stop()


def _admin_port(repo: Path) -> int:
    import json

    plan = json.loads((repo / ".meshctl/plan.json").read_text())
    return next(int(s["admin_port"]) for s in plan["sidecars"] if s["sidecar"] == "gateway/public")
