"""`Gateway.spec.workers: 2` on the local runtime, with real processes end to end.

`meshctl up` starts two gateway processes on one port (SO_REUSEPORT), each with its own admin
port; both take connections; `status` shows one gateway with two workers; a hot reload under
steady load loses no request and is confirmed by both workers; a worker killed with SIGKILL is
restarted by the supervisor while the other one serves on.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.helpers import Load, meshctl, pid_alive, recorded_pids, wait_until
from tests.support.git import commit_all
from tests.support.meshdir import policy_root
from tests.support.procs import free_port, http_get, requests_served

MESH = """\
apiVersion: meshctl/v1alpha1
kind: Mesh
metadata: {name: tiny}
spec: {trustDomain: tiny.local, mtls: disabled}
---
apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {name: edge}
spec:
  port: %(port)d
  workers: 2
  rules:
    - name: hello
      respond: {status: 200, body: "%(body)s"}
"""


def fresh_get(port: int, path: str = "/") -> tuple[int, bytes]:
    """One request on a new connection: the kernel picks a worker per connection."""
    return http_get(f"http://127.0.0.1:{port}{path}", timeout=10)


def admin_get(port: int, path: str) -> bytes:
    return http_get(f"http://127.0.0.1:{port}{path}", timeout=10)[1]


def served(admin_port: int) -> float:
    return requests_served(admin_get(admin_port, "/metrics").decode())


def gateway_records(state: Path) -> list[dict[str, Any]]:
    plan = json.loads((state / "plan.json").read_text())
    return [s for s in plan["sidecars"] if s["sidecar"] == "gateway/edge"]


def worker_pids(state: Path) -> dict[str, int | None]:
    procs = json.loads((state / "state.json").read_text())["processes"]
    return {name: p.get("pid") for name, p in procs.items() if name.startswith("gateway-edge")}


@pytest.mark.slow
def test_two_gateway_workers_share_a_port_reload_together_and_restart(tmp_path: Path) -> None:
    port = free_port()
    root = policy_root(tmp_path / "tiny", {"mesh.yaml": MESH % {"port": port, "body": "one"}},
                       ignore_state=True, commit="two gateway workers")
    policy = root / "mesh.d" / "mesh.yaml"
    state = root / ".meshctl"
    up = meshctl(root, "up", "--detach", "--timeout", "120")
    try:
        assert up.code == 0, up.stderr
        records = gateway_records(state)
        assert [r["instance"] for r in records] == ["gateway-edge", "gateway-edge_w1"]
        assert {r["outbound_port"] for r in records} == {port}
        admins = [r["admin_port"] for r in records]
        assert len(set(admins)) == 2
        pids = worker_pids(state)
        assert len({p for p in pids.values() if p}) == 2, pids

        # Both workers take connections on the one port.
        for _ in range(60):
            assert fresh_get(port) == (200, b"one")
        counts = [served(a) for a in admins]
        assert sum(counts) >= 60 and all(c > 0 for c in counts), counts

        status = meshctl(root, "status", "--format", "json", "--interval", "0")
        assert status.code == 0, status.stderr
        [gw] = status.json()["gateways"]
        assert (gw["workers"], gw["workers_healthy"], gw["healthy"]) == (2, 2, True)
        assert gw["requests"] >= 60
        text = meshctl(root, "status", "--interval", "0").stdout
        [line] = [ln for ln in text.splitlines() if ln.startswith("gateway edge")]
        assert "healthy" in line and "2 workers" in line, text

        # Hot reload under steady load (new connections and keep-alive ones): no request lost,
        # both workers confirm the new revision.
        policy.write_text(MESH % {"port": port, "body": "two"})
        target = commit_all(root, "a new answer")
        with Load(port, path="/", threads=4, pause=0.005, max_requests=3000) as load:
            time.sleep(0.5)
            applied = meshctl(root, "apply", "--window", "1s")
            time.sleep(0.5)
        assert applied.code == 0, applied.stdout + applied.stderr
        # One wave for both workers (the canary is one sidecar; a gateway's workers count as one).
        assert "updating 2 sidecar(s): gateway-edge, gateway-edge_w1" in applied.stdout + applied.stderr
        assert load.failures == [] and len(load.statuses) > 100, load.failures[:5]
        assert set(load.statuses) == {200}
        revisions = {json.loads(admin_get(a, "/revision"))["revision"] for a in admins}
        assert revisions == {target}, revisions
        for _ in range(20):
            assert fresh_get(port) == (200, b"two")

        # SIGKILL one worker: the other serves every new connection; the supervisor restarts it.
        victim = worker_pids(state)["gateway-edge_w1"]
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: not pid_alive(victim), 10, "the killed worker gone")
        for _ in range(30):
            assert fresh_get(port) == (200, b"two")

        def restarted() -> bool:
            pid = worker_pids(state).get("gateway-edge_w1")
            if not pid or pid == victim:
                return False
            try:
                return json.loads(admin_get(admins[1], "/ready")).get("ready") is True
            except OSError:
                return False

        wait_until(restarted, 60, "the killed worker restarted and ready")
        # A fresh process (restarted() saw a new pid). The first restart is immediate, so it
        # may already have taken some of the 30 connections above: its count is no proof.
        for _ in range(60):
            assert fresh_get(port) == (200, b"two")
        assert served(admins[1]) > 0, "the restarted worker takes connections again"
    finally:
        pids_left = recorded_pids(state) if (state / "state.json").exists() else []
        down = meshctl(root, "down")
    assert down.code == 0, down.stderr
    assert not [p for p in pids_left if pid_alive(p)]


@pytest.mark.slow
def test_apply_from_one_worker_to_two_starts_one_and_restarts_none(tmp_path: Path) -> None:
    port = free_port()
    one = (MESH % {"port": port, "body": "one"}).replace("workers: 2", "workers: 1")
    root = policy_root(tmp_path / "tiny", {"mesh.yaml": one}, ignore_state=True, commit="one gateway worker")
    policy = root / "mesh.d" / "mesh.yaml"
    state = root / ".meshctl"
    up = meshctl(root, "up", "--detach", "--timeout", "120")
    try:
        assert up.code == 0, up.stderr
        assert [r["instance"] for r in gateway_records(state)] == ["gateway-edge"]
        first = worker_pids(state)["gateway-edge"]
        policy.write_text(MESH % {"port": port, "body": "one"})
        commit_all(root, "two gateway workers")
        diff = meshctl(root, "diff", "HEAD~1", "HEAD")
        assert "~ gateway/edge: workers 1 -> 2" in diff.stdout, diff.stdout + diff.stderr
        with Load(port, path="/", threads=3, pause=0.005, max_requests=2000) as load:
            applied = meshctl(root, "apply", "--window", "1s")
        assert applied.code == 0, applied.stdout + applied.stderr
        assert load.failures == [] and set(load.statuses) == {200}, load.failures[:5]
        records = gateway_records(state)
        assert [r["instance"] for r in records] == ["gateway-edge", "gateway-edge_w1"]
        assert worker_pids(state)["gateway-edge"] == first  # the running worker kept going
        for _ in range(60):
            assert fresh_get(port) == (200, b"one")
        assert served(records[1]["admin_port"]) > 0, "the new worker takes connections"
    finally:
        pids_left = recorded_pids(state) if (state / "state.json").exists() else []
        down = meshctl(root, "down")
    assert down.code == 0, down.stderr
    assert not [p for p in pids_left if pid_alive(p)]
