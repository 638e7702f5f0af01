"""Calls that never reached an app are sent elsewhere, with the compiled default retry policy.

Real processes: grpcio apps, HTTP/2 servers that refuse every stream (RST_STREAM REFUSED_STREAM)
or answer a GOAWAY below the stream (`refuser.py`), a port with nothing listening, sidecars.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from meshctl.compile.compiler import DEFAULT_RETRY_ATTEMPTS, DEFAULT_RETRY_ON
from meshctl.contract import CompiledBackend, CompiledRetryBudget, CompiledRouteRule, RetryPolicy, TlsFiles
from meshctl.identity import MeshCA, write_sidecar_certs
from tests.grpc_mesh.conftest import GrpcApp, grpc_destination, inbound_config, pb, pb_grpc, start_grpc_app, with_tls
from tests.support.configs import TRUST_DOMAIN, identity, service_config
from tests.support.procs import PYTHON, REPO, Sidecar, bindings_for, free_port, start_sidecar, wait_port

pytestmark = pytest.mark.slow

CHECK = "/shop.inventory.v1.Inventory/Check"
# What `meshctl compile` gives a route without `retries` (Istio's connection-level defaults).
DEFAULT_RETRIES = RetryPolicy(attempts=DEFAULT_RETRY_ATTEMPTS, on=DEFAULT_RETRY_ON)


@dataclass
class Refuser:
    port: int
    proc: subprocess.Popen[str]
    out: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def refused(self) -> int:
        return self.out.read_text().count("refused ")


def start_refuser(root: Path, mode: str) -> Refuser:
    port = free_port()
    out = root / f"refuser-{mode}.out"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(PORT=str(port), MODE=mode)
    proc = subprocess.Popen([PYTHON, "-m", "tests.grpc_mesh.refuser"], cwd=REPO, env=env,
                            stdout=out.open("w"), stderr=subprocess.DEVNULL, text=True)
    wait_port(port, proc=proc)
    return Refuser(port, proc, out)


@dataclass
class Parts:
    root: Path
    app: GrpcApp
    refuse: Refuser
    goaway: Refuser
    inbound: dict[str, Sidecar]  # app, refuse (its app refuses streams), dead (no app)
    tls: dict[str, TlsFiles]


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parts]:
    root = Path(tmp_path_factory.mktemp("grpcrecovery"))
    ca = MeshCA.load_or_create(root / "ca", TRUST_DOMAIN)
    tls = {name: write_sidecar_certs(ca, identity(name), root / name / "tls") for name in ("inventory", "frontend")}
    app = start_grpc_app("inventory", "v1")
    refuse, goaway = start_refuser(root, "refuse"), start_refuser(root, "goaway")
    apps = {"app": app.address, "refuse": refuse.address, "dead": f"127.0.0.1:{free_port()}"}
    inbound: dict[str, Sidecar] = {}
    try:
        for key, address in apps.items():
            bindings = bindings_for(outbound=False, app=address, version="v1", instance=f"inventory-{key}")
            inbound[key] = start_sidecar(root / key, inbound_config("inventory"),
                                         with_tls(bindings, tls["inventory"]), wait=False)
        for sidecar in inbound.values():
            sidecar.wait_ready(timeout=120)
        yield Parts(root, app, refuse, goaway, inbound, tls)
    finally:
        codes = [sc.stop() for sc in inbound.values()]
        for proc in (refuse.proc, goaway.proc):
            proc.kill()
            proc.wait(timeout=10)
        app.stop()
    assert codes == [0] * len(codes)


def frontend(parts: Parts, name: str, endpoints: tuple[str, ...], retries: RetryPolicy, mtls: str) -> Sidecar:
    rule = CompiledRouteRule(name="default", retries=retries,
                             backends=(CompiledBackend(service="inventory", version="v1", weight=100),))
    config = service_config("frontend", (grpc_destination("inventory", ("v1",), (rule,)),), revision=name,
                            mtls=mtls, inbound=None,
                            retry_budget=CompiledRetryBudget(percent=20, min_per_second=1))
    bindings = bindings_for(inbound=False, endpoints={"inventory": {"v1": endpoints}})
    if mtls == "strict":
        bindings = with_tls(bindings, parts.tls["frontend"])
    return start_sidecar(parts.root / name, config, bindings)


def outcomes(sidecar: Sidecar, calls: int) -> Counter[str]:
    """`calls` unary calls on one channel (one HTTP/2 connection), as a stock client makes them."""
    proxy = f"http://127.0.0.1:{sidecar.bindings.listeners.outbound}"
    channel = grpc.insecure_channel("inventory:80", options=[("grpc.http_proxy", proxy),
                                                              ("grpc.enable_retries", 0)])
    stub = pb_grpc.InventoryStub(channel)
    seen: Counter[str] = Counter()
    for i in range(calls):
        try:
            seen[stub.Check(pb.StockRequest(item=str(i % 3 + 1)), timeout=10).version] += 1
        except grpc.RpcError as exc:
            seen[exc.code().name] += 1
    channel.close()
    return seen


def attempts(sidecar: Sidecar) -> Counter[int]:
    return Counter(e["attempts"] for e in sidecar.access_log() if e.get("path") == CHECK)


@pytest.mark.parametrize("mode", ["refuse", "goaway"])
def test_a_refused_stream_is_sent_to_another_endpoint(parts: Parts, mode: str) -> None:
    """Cleartext HTTP/2 straight to the endpoints (mTLS off): one of two refuses every stream
    (RST_STREAM REFUSED_STREAM), or answers a GOAWAY whose last-stream-id is below the
    stream. With the default retry policy (`connect-failure`, `refused-stream`) every call
    succeeds; the refused first tries went to the good endpoint."""
    refuser = parts.refuse if mode == "refuse" else parts.goaway
    before = refuser.refused()
    sidecar = frontend(parts, f"direct-{mode}", (refuser.address, parts.app.address), DEFAULT_RETRIES, "disabled")
    try:
        assert outcomes(sidecar, 40) == Counter({"v1": 40})
        assert refuser.refused() - before >= 5  # round robin sent it its share of first tries
        assert attempts(sidecar)[2] >= 5  # those calls took a second try
    finally:
        assert sidecar.stop() == 0, sidecar.stderr()[-1500:]


def test_without_retries_a_refused_stream_fails(parts: Parts) -> None:
    """attempts: 0 (what a route that turns retries off compiles to): refused calls fail."""
    sidecar = frontend(parts, "direct-noretry", (parts.refuse.address, parts.app.address), RetryPolicy(), "disabled")
    try:
        seen = outcomes(sidecar, 20)
        assert seen["v1"] >= 5 and seen["UNAVAILABLE"] >= 5, seen
    finally:
        assert sidecar.stop() == 0, sidecar.stderr()[-1500:]


def test_apps_that_never_saw_the_call_behind_their_sidecars(parts: Parts) -> None:
    """mTLS strict, three endpoints: a good one, one whose app refuses every stream, one whose
    app is down. Their sidecars answer UNAVAILABLE flagged UF; the caller's sidecar sends the
    call to another endpoint under the default policy: no call fails."""
    endpoints = tuple(parts.inbound[k].inbound_address for k in ("refuse", "app", "dead"))
    sidecar = frontend(parts, "mesh-unreached", endpoints, DEFAULT_RETRIES, "strict")
    try:
        assert outcomes(sidecar, 60) == Counter({"v1": 60})
        assert sum(n for tries, n in attempts(sidecar).items() if tries > 1) >= 10
        flags = Counter(e.get("response_flags") for e in parts.inbound["refuse"].access_log()
                        if e.get("path") == CHECK)
        assert flags.get("UF", 0) >= 5, flags
        dead = [e for e in parts.inbound["dead"].access_log() if e.get("path") == CHECK]
        assert dead and {e.get("grpc_status") for e in dead} == {"14"}
    finally:
        assert sidecar.stop() == 0, sidecar.stderr()[-1500:]
