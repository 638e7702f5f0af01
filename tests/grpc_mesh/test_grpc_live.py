"""Real grpcio clients and servers through outbound sidecar -> mTLS -> inbound sidecar -> app."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshctl.contract import (
    AbortFault,
    CompiledBackend,
    CompiledFault,
    CompiledMirror,
    CompiledRetryBudget,
    CompiledRouteRule,
    CompiledStringMatch,
    DelayFault,
    RequestMatch,
    RetryPolicy,
)
from meshctl.runtime.polling import poll
from tests.grpc_mesh.conftest import (
    GrpcMesh,
    grpc_destination,
    inbound_config,
    pb,
    pb_grpc,
    start_grpc_app,
    with_tls,
)
from tests.support.configs import service_config
from tests.support.procs import REPO, Sidecar, bindings_for, free_port, start_sidecar

pytestmark = pytest.mark.slow  # one module-scoped mesh of five processes

CHECK = "/shop.inventory.v1.Inventory/Check"


def split(weights: dict[str, int], **rule: object) -> CompiledRouteRule:
    backends = tuple(CompiledBackend(service="inventory", version=v, weight=w) for v, w in weights.items())
    return CompiledRouteRule(name="default", backends=backends, **rule)  # type: ignore[arg-type]


def flaky(**rule: object) -> CompiledRouteRule:
    return CompiledRouteRule(name="flaky", backends=(CompiledBackend(service="flaky", weight=100),),
                             **rule)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def default_route(mesh: GrpcMesh) -> Iterator[None]:
    yield
    mesh.route()


def grpc_series(sidecar) -> dict[tuple[str, str, str, str], float]:  # type: ignore[no-untyped-def]
    """istio_requests_total of gRPC calls: (reporter, service, response_code, grpc status) -> count."""
    found: dict[tuple[str, str, str, str], float] = {}
    for family in text_string_to_metric_families(sidecar.metrics()):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "istio_requests_total" and labels.get("request_protocol") == "grpc":
                key = (labels["reporter"], labels["destination_service_name"], labels["response_code"],
                       labels["grpc_response_status"])
                found[key] = found.get(key, 0) + sample.value
    return found


def entries(sidecar, path: str | None = None) -> list[dict]:  # type: ignore[no-untyped-def]
    return [e for e in sidecar.access_log() if path is None or e.get("path") == path]


def test_every_kind_of_call_crosses_the_mesh_through_a_grpc_proxy_tunnel(mesh: GrpcMesh) -> None:
    mesh.route(split({"v1": 100}))
    stub = pb_grpc.InventoryStub(mesh.channel())
    reply, call = stub.Check.with_call(pb.StockRequest(item="1"), timeout=10)
    assert (reply.available, reply.version) == (12, "v1")
    assert ("x-inventory-version", "v1") in call.trailing_metadata()  # trailers end to end
    assert [s.seq for s in stub.Watch(pb.StockRequest(item="2", updates=4), timeout=10)] == [0, 1, 2, 3]
    receipt = stub.Reserve(iter([pb.StockRequest(item="1", quantity=q) for q in (1, 2, 3)]), timeout=10)
    assert (receipt.items, receipt.quantity) == (3, 6)
    assert [s.seq for s in stub.Trade(iter([pb.StockRequest(item="3")] * 5), timeout=10)] == list(range(5))
    # The app's sidecar saw a verified caller over mTLS, per call, with the method path.
    seen = entries(mesh.inbound["inventory-v1"], CHECK)[-1]
    assert seen["downstream_peer_uri_san"].endswith("/service/frontend")
    assert seen["connection_security_policy"] == "mutual_tls"
    assert (seen["protocol"], seen["grpc_status"]) == ("HTTP/2.0", "0")
    out = entries(mesh.frontend, CHECK)[-1]
    assert (out["service"], out["version"], out["route_name"]) == ("inventory", "v1", "default")
    assert out["grpc_status"] == "0"
    assert out["trace_id"]
    # Istio's metrics: request_protocol grpc, grpc_response_status per call, on both sides.
    for sidecar, reporter in ((mesh.frontend, "source"), (mesh.inbound["inventory-v1"], "destination")):
        series = grpc_series(sidecar)
        assert series.get((reporter, "inventory", "200", "0"), 0) >= 4, series


def test_prior_knowledge_http2_straight_to_the_outbound_listener(mesh: GrpcMesh) -> None:
    stub = pb_grpc.InventoryStub(mesh.direct_channel("inventory"))
    assert stub.Check(pb.StockRequest(item="2"), timeout=10).available == 3


def test_a_stock_client_with_the_runtime_proxy_environment(mesh: GrpcMesh) -> None:
    """grpc_proxy/http_proxy in the environment, as `meshctl up` sets them, and nothing else."""
    script = (
        "from shop.grpc_stubs import load; import grpc\n"
        "pb, g = load('inventory')\n"
        "stub = g.InventoryStub(grpc.insecure_channel('inventory:80'))\n"
        "print(stub.Check(pb.StockRequest(item='1'), timeout=10).available)\n"
    )
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proxy = f"http://{mesh.proxy}"
    env.update(HTTP_PROXY=proxy, http_proxy=proxy, grpc_proxy=proxy)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "12", done.stderr[-2000:]


def test_streams_are_relayed_as_they_come(mesh: GrpcMesh) -> None:
    stub = pb_grpc.InventoryStub(mesh.channel())
    started = time.monotonic()
    arrivals = [time.monotonic() - started
                for _ in stub.Watch(pb.StockRequest(item="1", updates=3, interval_ms=1000), timeout=20)]
    assert arrivals[-1] - arrivals[0] > 1.5, arrivals  # the first reading did not wait for the last
    # Bidirectional ping-pong: each request is sent only after the previous answer arrived,
    # which deadlocks if either direction is buffered.
    requests: queue.Queue[object] = queue.Queue()

    def pending() -> Iterator[object]:
        while (item := requests.get(timeout=10)) is not None:
            yield item

    requests.put(pb.StockRequest(item="1"))
    answers = []
    for answer in stub.Trade(pending(), timeout=20):
        answers.append(answer.seq)
        requests.put(pb.StockRequest(item="1") if len(answers) < 5 else None)
    assert answers == list(range(5))


def test_one_channel_is_balanced_per_call_80_20(mesh: GrpcMesh) -> None:
    mesh.route(split({"v1": 80, "v2": 20}))
    stub = pb_grpc.InventoryStub(mesh.channel())  # one channel: one HTTP/2 connection
    versions = Counter(stub.Check(pb.StockRequest(item="1"), timeout=10).version for _ in range(1000))
    assert abs(versions["v1"] / 10 - 80) <= 4, versions


def test_retries_on_unavailable_and_never_on_other_statuses(mesh: GrpcMesh) -> None:
    retries = RetryPolicy(attempts=8, on=("unavailable", "cancelled"))
    mesh.route(flaky(retries=retries))
    stub = pb_grpc.InventoryStub(mesh.channel("flaky:80"))
    codes: Counter[str] = Counter()
    for _ in range(300):
        try:
            stub.Check(pb.StockRequest(item="1"), timeout=10)
            codes["OK"] += 1
        except grpc.RpcError as exc:
            codes[exc.code().name] += 1
    assert codes["OK"] >= 297, codes  # 50% UNAVAILABLE upstream, >= 99% answered
    retried = [e["attempts"] for e in entries(mesh.frontend, CHECK) if e["service"] == "flaky"]
    assert max(retried) > 1
    # INVALID_ARGUMENT is not a retry condition: one attempt, the app's own status and message.
    before = len(entries(mesh.inbound["flaky-v1"], CHECK))
    with pytest.raises(grpc.RpcError) as caught:
        stub.Check(pb.StockRequest(item="1"), metadata=(("x-fail-code", "INVALID_ARGUMENT"),), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "asked to fail" in caught.value.details()
    assert entries(mesh.frontend, CHECK)[-1]["attempts"] == 1
    assert len(entries(mesh.inbound["flaky-v1"], CHECK)) == before + 1


def test_fault_abort_answers_with_its_grpc_status(mesh: GrpcMesh) -> None:
    abort = CompiledFault(abort=AbortFault(status=429, percent=100, grpc_status=8))
    mesh.route(split({"v1": 100}, fault=abort))
    stub = pb_grpc.InventoryStub(mesh.channel())
    with pytest.raises(grpc.RpcError) as caught:
        stub.Check(pb.StockRequest(item="1"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ("x-mesh-response-flags", "FI") in caught.value.trailing_metadata()
    assert grpc_series(mesh.frontend).get(("source", "inventory", "200", "8"), 0) >= 1


def test_a_deadline_shorter_than_an_injected_delay(mesh: GrpcMesh) -> None:
    delay = CompiledFault(delay=DelayFault(fixed_ms=3000, percent=100))
    mesh.route(split({"v1": 100}, fault=delay))
    stub = pb_grpc.InventoryStub(mesh.channel())
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        stub.Check(pb.StockRequest(item="1"), timeout=0.5)
    elapsed = time.monotonic() - started
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.45 < elapsed < 1.2, elapsed
    time.sleep(0.3)  # the sidecar answered at the deadline too: DEADLINE_EXCEEDED, flags DI,UT
    assert entries(mesh.frontend, CHECK)[-1]["grpc_status"] == "4"


def test_the_route_timeout_caps_grpc_timeout(mesh: GrpcMesh) -> None:
    mesh.route(split({"v1": 100}, timeout_ms=400))
    stub = pb_grpc.InventoryStub(mesh.channel())
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:  # the app waits 3 s; the caller would wait 10 s
        stub.Check(pb.StockRequest(item="1"), metadata=(("x-delay-ms", "3000"),), timeout=10)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2.0


def test_sidecar_errors_are_grpc_errors(mesh: GrpcMesh) -> None:
    only_check = CompiledRouteRule(
        name="check-only", matches=(RequestMatch(path=CompiledStringMatch(exact=CHECK)),),
        backends=(CompiledBackend(service="inventory", version="v1", weight=100),),
    )
    mesh.route(only_check)
    stub = pb_grpc.InventoryStub(mesh.channel())
    assert stub.Check(pb.StockRequest(item="1"), timeout=10).version == "v1"
    with pytest.raises(grpc.RpcError) as caught:  # Watch matches no rule: 404 NR
        list(stub.Watch(pb.StockRequest(item="1"), timeout=10))
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert ("x-mesh-response-flags", "NR") in caught.value.trailing_metadata()
    nowhere = pb_grpc.InventoryStub(mesh.direct_channel("nowhere"))  # registry-only: 502 NR
    with pytest.raises(grpc.RpcError) as caught:
        nowhere.Check(pb.StockRequest(item="1"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert ("x-mesh-response-flags", "NR") in caught.value.trailing_metadata()


def test_a_dead_endpoint_is_passed_over_for_every_call(mesh: GrpcMesh) -> None:
    """Two endpoints of inventory v1, one a port with nothing listening: every call of fresh
    channels succeeds (the first attempt's connect failure is sent to the other endpoint)."""
    dead = f"127.0.0.1:{free_port()}"
    rule = split({"v1": 100}, retries=RetryPolicy(attempts=2, on=("unavailable",)))
    config = service_config("frontend", (grpc_destination("inventory", ("v1",), (rule,)),),
                            revision="g-dead", mtls="strict", inbound=None,
                            retry_budget=CompiledRetryBudget(percent=100, min_per_second=1000))
    endpoints = {"inventory": {"v1": (mesh.inbound["inventory-v1"].inbound_address, dead)}}
    tls = mesh.frontend.bindings.tls
    assert tls is not None
    sidecar = start_sidecar(mesh.root / "frontend-dead", config,
                            with_tls(bindings_for(inbound=False, endpoints=endpoints), tls))
    try:
        proxy = f"http://127.0.0.1:{sidecar.bindings.listeners.outbound}"
        failures = 0
        for _ in range(10):  # new channels: new upstream connections, the dead one tried anew
            channel = grpc.insecure_channel("inventory:80", options=[("grpc.http_proxy", proxy),
                                                                      ("grpc.enable_retries", 0)])
            stub = pb_grpc.InventoryStub(channel)
            for i in range(10):
                try:
                    assert stub.Check(pb.StockRequest(item=str(i)), timeout=10).version == "v1"
                except grpc.RpcError:
                    failures += 1
            channel.close()
        assert failures == 0
        assert {e.get("upstream_host") for e in entries(sidecar, CHECK)} <= {
            mesh.inbound["inventory-v1"].inbound_address}
    finally:
        assert sidecar.stop() == 0, sidecar.stderr()[-1500:]


def test_per_try_timeout_bounds_each_attempt(mesh: GrpcMesh) -> None:
    """The app waits 3 s; a 0.3 s perTryTimeout ends each attempt: retried on
    `deadline-exceeded`, and the caller (willing to wait 10 s) gets DEADLINE_EXCEEDED soon."""
    slow = (("x-delay-ms", "3000"),)
    for retried in (False, True):
        on = ("deadline-exceeded",) if retried else ("unavailable",)
        mesh.route(split({"v1": 50, "v2": 50}, retries=RetryPolicy(attempts=1, per_try_timeout_ms=300, on=on)))
        stub = pb_grpc.InventoryStub(mesh.channel())
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            stub.Check(pb.StockRequest(item="1"), metadata=slow, timeout=10)
        elapsed = time.monotonic() - started
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert (0.55 if retried else 0.25) < elapsed < (2.0 if retried else 1.5), (retried, elapsed)
        time.sleep(0.3)
        assert entries(mesh.frontend, CHECK)[-1]["attempts"] == (2 if retried else 1)


def start_mirrored(mesh: GrpcMesh, started: list[Sidecar], suffix: str, app: str) -> tuple[Sidecar, str]:
    """A v3 inventory sidecar before `app`, and a frontend sidecar that mirrors every call to
    v1 onto it (both appended to `started`, for the caller to stop); returns v3 and the
    frontend's proxy URL."""
    tls = mesh.frontend.bindings.tls
    assert tls is not None
    v3 = start_sidecar(mesh.root / f"inventory-v3{suffix}", inbound_config("inventory"), with_tls(
        bindings_for(outbound=False, app=app, version="v3", instance=f"inventory-v3{suffix}"),
        mesh.inbound["inventory-v1"].bindings.tls))  # type: ignore[arg-type]
    started.append(v3)
    rule = split({"v1": 100}, mirror=CompiledMirror(service="inventory", version="v3", percent=100))
    config = service_config("frontend", (grpc_destination("inventory", ("v1", "v3"), (rule,)),),
                            revision=f"g-mirror{suffix}", mtls="strict", inbound=None)
    endpoints = {"inventory": {"v1": (mesh.inbound["inventory-v1"].inbound_address,),
                               "v3": (v3.inbound_address,)}}
    frontend = start_sidecar(mesh.root / f"frontend-mirror{suffix}", config,
                             with_tls(bindings_for(inbound=False, endpoints=endpoints), tls))
    started.append(frontend)
    return v3, frontend.outbound_proxy


def test_calls_are_mirrored_without_waiting_for_a_slow_mirror(mesh: GrpcMesh) -> None:
    """Calls to v1 mirrored to v3, an app that answers after 1 s: every copy reaches v3 and
    the caller's calls take what v1 takes."""
    slow_app = start_grpc_app("inventory", "v3", DELAY_MS="1000")
    started: list[Sidecar] = []
    try:
        v3, proxy = start_mirrored(mesh, started, "", slow_app.address)
        channel = grpc.insecure_channel("inventory:80", options=[("grpc.http_proxy", proxy)])
        stub = pb_grpc.InventoryStub(channel)
        assert stub.Check(pb.StockRequest(item="warm"), timeout=10).version == "v1"
        took = []
        for i in range(20):
            begun = time.monotonic()
            assert stub.Check(pb.StockRequest(item=str(i)), timeout=10).version == "v1"
            took.append(time.monotonic() - begun)
        channel.close()
        assert max(took) < 0.5, took  # the mirror answers after 1 s
        poll(lambda: len(entries(v3, CHECK)) >= 21, timeout=10, every=0.2)
        assert len(entries(v3, CHECK)) == 21
    finally:
        codes = [sc.stop() for sc in started]
        slow_app.stop()
    assert codes == [0] * len(codes)


class Recorder(pb_grpc.InventoryServicer):
    """A mirror version's app (grpcio's threaded server in this process): notes each message."""

    def __init__(self) -> None:
        self.items: queue.Queue[str] = queue.Queue()

    def Reserve(self, request_iterator, context):  # noqa: N802 (gRPC method names)
        count = 0
        for request in request_iterator:
            self.items.put(request.item)
            count += 1
        return pb.Receipt(items=count, version="v3")

    def Trade(self, request_iterator, context):  # noqa: N802
        for seq, request in enumerate(request_iterator):
            self.items.put(request.item)
            yield pb.Stock(item=request.item, seq=seq, version="v3")

    def seen(self, count: int, timeout: float = 10.0) -> list[str]:
        return [self.items.get(timeout=timeout) for _ in range(count)]


def test_streaming_calls_are_mirrored_as_they_stream(mesh: GrpcMesh) -> None:
    """Client-streaming and bidirectional calls to v1 mirrored to v3: the mirror gets each
    message while the call still streams (the caller sends its second message only once v3
    has the first), and every message of a 200-message call."""
    from concurrent import futures

    recorder = Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_InventoryServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    started: list[Sidecar] = []
    try:
        _, proxy = start_mirrored(mesh, started, "-stream", f"127.0.0.1:{port}")
        stub = pb_grpc.InventoryStub(grpc.insecure_channel("inventory:80", options=[("grpc.http_proxy", proxy)]))

        def lockstep(prefix: str, count: int) -> Iterator[object]:
            for i in range(count):
                yield pb.StockRequest(item=f"{prefix}{i}", quantity=1)
                assert recorder.seen(1) == [f"{prefix}{i}"]  # v3 has it before the next is sent

        receipt = stub.Reserve(lockstep("r", 3), timeout=30)
        assert (receipt.items, receipt.version) == (3, "v1")  # the caller's answer is v1's
        assert [s.version for s in stub.Trade(lockstep("t", 4), timeout=30)] == ["v1"] * 4
        many = [pb.StockRequest(item=f"m{i}", quantity=1) for i in range(200)]
        assert stub.Reserve(iter(many), timeout=30).items == 200
        assert recorder.seen(200) == [f"m{i}" for i in range(200)]
    finally:
        codes = [sc.stop() for sc in started]
        server.stop(grace=None)
    assert codes == [0] * len(codes)
