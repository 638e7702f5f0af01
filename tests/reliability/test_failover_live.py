"""Chaos under steady load: kill -9 of a replica, of a replica's sidecar, and of a lone app.

Each scenario runs real apps, real inbound sidecars in front of them and a calling sidecar
with the compiled defaults (2 retries on connect-failure and refused-stream, default budget),
under open-loop load; the numbers are reported in docs/reliability.md.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from meshctl.contract import (
    CompiledBackend,
    CompiledHealthCheck,
    CompiledOutlierDetection,
    CompiledRouteRule,
    CompiledSticky,
    CompiledTrafficPolicy,
    RetryPolicy,
)
from tests.reliability.load import SteadyLoad, failures
from tests.support.configs import destination, service_config
from tests.support.procs import App, Sidecar, bindings_for, http_get, start_app, start_sidecar

pytestmark = pytest.mark.slow
DEFAULT_RETRIES = RetryPolicy(attempts=2, on=("connect-failure", "refused-stream"))  # as compiled
IN_FLIGHT_ALLOWANCE = 4  # requests that may be on the killed process at 40 req/s


def _replica(tmp: Path, name: str, version: str = "v1") -> tuple[App, Sidecar]:
    app = start_app(name)
    sc = start_sidecar(tmp / f"sc-{name}", service_config("orders"),
                       bindings_for(outbound=False, app=app.address, version=version, instance=name))
    return app, sc


def _caller(tmp: Path, endpoints: dict[str, tuple[str, ...]], rule: CompiledRouteRule,
            policy: CompiledTrafficPolicy | None = None) -> Sidecar:
    versions = tuple(sorted(endpoints))
    return start_sidecar(tmp / "caller", service_config(
        "checkout", (destination("orders", versions, (rule,), policy),)),
        bindings_for(inbound=False, endpoints={"orders": endpoints}))


def _rule(*backends: CompiledBackend, sticky: CompiledSticky | None = None) -> CompiledRouteRule:
    return CompiledRouteRule(name="default", backends=backends, retries=DEFAULT_RETRIES, sticky=sticky)


V1 = CompiledBackend(service="orders", version="v1", weight=100)


def _kill9(proc: App | Sidecar) -> float:
    proc.proc.send_signal(signal.SIGKILL)
    proc.proc.wait(timeout=10)
    return time.monotonic()


def test_kill_9_of_one_of_two_replicas_loses_only_requests_in_flight(
    tmp_path: Path, procs: list[App | Sidecar]
) -> None:
    (a1, s1), (a2, s2) = _replica(tmp_path, "r1"), _replica(tmp_path, "r2")
    caller = _caller(tmp_path, {"v1": (s1.inbound_address, s2.inbound_address)}, _rule(V1))
    procs += [a1, s1, a2, s2, caller]
    load = SteadyLoad("http://orders/work", caller.outbound_proxy, rps=40, seconds=5).start()
    time.sleep(1.5)
    killed = _kill9(a1)
    samples = load.join()
    lost = failures(samples)
    assert len(samples) == 200
    assert len(lost) <= IN_FLIGHT_ALLOWANCE, lost
    assert not failures(samples, after=killed + 0.2), "a request failed after the kill settled"
    assert {s.app for s in samples if s.started > killed + 0.2} == {"r2"}
    _report("replica app kill -9", samples, killed)


def test_kill_9_of_a_replicas_sidecar_loses_only_requests_in_flight(
    tmp_path: Path, procs: list[App | Sidecar]
) -> None:
    (a1, s1), (a2, s2) = _replica(tmp_path, "r1"), _replica(tmp_path, "r2")
    caller = _caller(tmp_path, {"v1": (s1.inbound_address, s2.inbound_address)}, _rule(V1))
    procs += [a1, s1, a2, s2, caller]
    load = SteadyLoad("http://orders/work", caller.outbound_proxy, rps=40, seconds=5).start()
    time.sleep(1.5)
    killed = _kill9(s1)
    samples = load.join()
    assert len(failures(samples)) <= IN_FLIGHT_ALLOWANCE, failures(samples)
    assert not failures(samples, after=killed + 0.2)
    _report("replica sidecar kill -9", samples, killed)


def test_kill_9_of_a_lone_app_recovers_within_2_s_of_its_restart(
    tmp_path: Path, procs: list[App | Sidecar]
) -> None:
    """The defect: a 0.7 s crash of reviews v1 gave 72% errors for the whole baseEjectionTime.
    Here v1 is one instance with outlier detection on; sticky users of v1 move to v2 while v1
    is down, and v1 takes traffic again within 2 s of coming back (health check)."""
    a1, s1 = _replica(tmp_path, "v1-0", "v1")
    a2, s2 = _replica(tmp_path, "v2-0", "v2")
    v1, v2 = (CompiledBackend(service="orders", version=v, weight=w) for v, w in (("v1", 90), ("v2", 10)))
    policy = CompiledTrafficPolicy(
        outlier_detection=CompiledOutlierDetection(consecutive_5xx=3, base_ejection_time_ms=30_000,
                                                   max_ejection_percent=50),
        health_check=CompiledHealthCheck(path="/healthz", interval_ms=250, timeout_ms=200),
    )
    caller = _caller(tmp_path, {"v1": (s1.inbound_address,), "v2": (s2.inbound_address,)},
                     _rule(v1, v2, sticky=CompiledSticky(header="end-user")), policy)
    procs += [a1, s1, a2, s2, caller]
    user = _user_on(caller, "v1-0")
    load = SteadyLoad("http://orders/work", caller.outbound_proxy, rps=40, seconds=60,
                      headers={"end-user": user}).start()
    time.sleep(1.5)
    killed = _kill9(a1)
    time.sleep(0.7)
    a1 = start_app("v1-0", port=a1.port)
    back = time.monotonic()
    procs.append(a1)
    time.sleep(3)
    samples = load.stop()
    assert not failures(samples, after=back), "a request failed after the app was back"
    served_by_v1 = [s.started for s in samples if s.started > back and s.app == "v1-0"]
    assert served_by_v1 and served_by_v1[0] - back < 2.0, "v1 not back within 2 s"
    endpoints = json.loads(http_get(f"{caller.admin_url}/config")[1])["endpoints"]["orders"]
    assert {e["address"] for e in endpoints} == {s1.inbound_address, s2.inbound_address}
    _report("lone app kill -9, restart after 0.7 s", samples, killed, back)


def _user_on(caller: Sidecar, app: str) -> str:
    from tests.dataplane.conftest import fire, get
    for i in range(200):
        if fire(get("http://orders/who", 1, {"end-user": f"u{i}"}), caller.outbound_proxy)[0].app == app:
            return f"u{i}"
    raise AssertionError(f"no sticky user lands on {app}")


def _report(name: str, samples: list, killed: float, back: float | None = None) -> None:
    lost = failures(samples)
    extra = f", back at +{back - killed:.2f} s" if back else ""
    print(f"\n[chaos] {name}: {len(samples)} requests, {len(lost)} failed "
          f"({', '.join(sorted({f'{s.status} {s.flags}'.strip() for s in lost})) or 'none'}){extra}")
