"""`up` on small meshes: crashed apps and sidecars are restarted and show in status; a taken port
or an app that exits is named; the foreground `up` stops everything on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from meshctl.runtime.ownership import mesh_running, supervised
from meshctl.runtime.state import StateDir
from tests.runtime.helpers import (
    gateway_port,
    get,
    meshctl,
    pid_alive,
    recorded_pids,
    wait_until,
)
from tests.support.meshdir import policy_root

MESH = """\
apiVersion: meshctl/v1alpha1
kind: Mesh
metadata: {name: tiny}
spec: {trustDomain: tiny.local}
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: catalog}
spec:
  versions:
    - name: v1
      run: %(run)s
  healthCheck: {path: /healthz, interval: 1s}
---
apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {name: edge}
spec:
  port: %(port)d
  rules:
    - name: all
      service: catalog
"""


def tiny_mesh(tmp: Path, run: str = "[python, -m, shop.catalog]", port: int = 8080) -> Path:
    return policy_root(tmp / "tiny", {"mesh.yaml": MESH % {"run": run, "port": port}}, apps=True)


def processes(root: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    import json

    return json.loads((root / ".meshctl" / "state.json").read_text())["processes"]  # type: ignore[no-any-return]


def sidecar_status(root: Path) -> dict:  # type: ignore[type-arg]
    result = meshctl(root, "status", "--format", "json", "--interval", "0")
    assert result.code == 0, result.stderr
    return next(s for s in result.json()["sidecars"] if s["instance"] == "catalog-v1-0")  # type: ignore[no-any-return]


@pytest.mark.slow
def test_killed_app_and_sidecar_are_restarted_and_status_shows_it(tmp_path: Path) -> None:
    root = tiny_mesh(tmp_path)
    up = meshctl(root, "up", "--detach", "--gateway-port", "edge=0", "--timeout", "120")
    try:
        assert up.code == 0, up.stderr
        port = gateway_port(root / ".meshctl", "edge")
        assert get("127.0.0.1", port, "/products/1")[0] == 200
        assert sidecar_status(root)["restarts"] == 0

        for name in ("catalog-v1-0", "catalog-v1-0.sidecar"):
            before = processes(root)[name]
            os.killpg(before["pid"], signal.SIGKILL)
            wait_until(lambda n=name, b=before: processes(root)[n]["restarts"] == b["restarts"] + 1,
                       what=f"{name} noticed")
            wait_until(lambda n=name: processes(root)[n]["ready"], timeout=90,
                       what=f"{name} ready again")
            after = processes(root)[name]
            assert after["pid"] != before["pid"] and after["last_exit"] == -signal.SIGKILL

        status = sidecar_status(root)
        assert status["restarts"] == 2 and status["healthy"], status
        wait_until(lambda: get("127.0.0.1", port, "/products/1")[0] == 200, timeout=30,
                   what="traffic flows again")
    finally:
        pids = recorded_pids(root / ".meshctl")
        down = meshctl(root, "down")
    assert down.code == 0 and "stopped" in down.stdout
    assert not [p for p in pids if pid_alive(p)]


def test_taken_gateway_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        root = tiny_mesh(tmp_path, port=taken)
        up = meshctl(root, "up", "--detach")
    assert up.code == 2
    assert f"gateway/edge (gateway-edge) gateway listener: port {taken} on 127.0.0.1 is taken" in (
        up.stderr
    )
    assert "--gateway-port" in up.stderr and "Traceback" not in up.stderr
    nothing_left_running(root)


def test_a_policy_that_does_not_compile_leaves_nothing_running(tmp_path: Path) -> None:
    """`up` starts its daemon before it compiles (the fork server warms meanwhile): a refused
    policy stops it again, quietly."""
    root = policy_root(tmp_path / "tiny", {"mesh.yaml": MESH.replace("service: catalog", "service: nowhere")
                                           % {"run": "[python, -m, shop.catalog]", "port": 8080}}, apps=True)
    up = meshctl(root, "up", "--detach")
    assert up.code == 1, up.stderr
    assert "nowhere" in up.stderr and "Traceback" not in up.stderr
    assert "stopping what was started" not in up.stderr  # nothing was
    nothing_left_running(root)


def nothing_left_running(root: Path) -> None:
    state = StateDir(root / ".meshctl")
    assert not state.pidfile.exists()
    assert not supervised(state)  # no fork server, no sidecar
    assert not mesh_running(state)


@pytest.mark.slow
def test_an_app_that_exits_is_named_and_everything_is_stopped(tmp_path: Path) -> None:
    run = '[python, -c, "import sys; print(\'catalog: no database\'); sys.exit(4)"]'
    root = tiny_mesh(tmp_path, run=run)
    up = meshctl(root, "up", "--detach", "--gateway-port", "edge=0", "--timeout", "120")
    assert up.code == 1
    assert "catalog-v1-0 (app) exited with code 4 before it was ready" in up.stderr
    assert "catalog: no database" in up.stderr
    pids = recorded_pids(root / ".meshctl")
    assert not (root / ".meshctl" / "supervisor.pid").exists()
    assert not [p for p in pids if pid_alive(p)]


@pytest.mark.slow
def test_foreground_up_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    root = tiny_mesh(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "MESHCTL_STATE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshctl", "up", "--gateway-port", "edge=0"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
        reader.start()
        wait_until(lambda: any("running in the foreground" in line for line in lines),
                   timeout=120, what="foreground up ready")
        pids = recorded_pids(root / ".meshctl")
        assert len(pids) == 3
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(timeout=10)
        stderr = "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "stopped" in stderr
    assert not [p for p in pids if pid_alive(p)]


@pytest.mark.slow
def test_supervisor_renews_sidecar_certificates(tmp_path: Path) -> None:
    root = tiny_mesh(tmp_path)
    env = {"MESHCTL_RENEW_INTERVAL": "0.5"}
    up = meshctl(root, "up", "--detach", "--gateway-port", "edge=0", "--timeout", "120", env=env)
    try:
        assert up.code == 0, up.stderr
        tls = root / ".meshctl" / "sidecars" / "catalog-v1-0" / "tls"
        first = (tls / "cert.pem").read_bytes()
        (tls / "ca.pem").write_bytes(b"not the mesh bundle\n")
        (tls / "cert.pem").unlink()
        wait_until(lambda: (tls / "cert.pem").exists() and (tls / "cert.pem").read_bytes() != first,
                   timeout=30, what="certificate re-issued")
        assert b"BEGIN CERTIFICATE" in (tls / "ca.pem").read_bytes()
        log = (root / ".meshctl" / "logs" / "supervisor.log").read_text()
        assert "catalog-v1-0.sidecar: certificate renewed" in log
        port = gateway_port(root / ".meshctl", "edge")
        wait_until(lambda: get("127.0.0.1", port, "/products/1")[0] == 200, timeout=30,
                   what="mTLS traffic with the new certificate")
    finally:
        meshctl(root, "down")


def test_status_while_the_first_plan_is_being_compiled_says_the_mesh_is_starting(
        tmp_path: Path) -> None:
    """Between `up` starting its daemon and writing plan.json, `status` and `apply` find a
    supervisor with no plan: they say the mesh is starting, not that its state is damaged."""
    from meshctl.runtime.control import end_daemon, start_daemon

    root = tiny_mesh(tmp_path)
    state = StateDir(root / ".meshctl")
    pid = start_daemon(state, warm=True)  # what `up` does before it compiles
    try:
        wait_until(lambda: mesh_running(state), timeout=30, what="the daemon holds its lock")
        for args in (("status",), ("apply", "--window", "0s")):
            result = meshctl(root, *args)
            assert result.code == 2, (args, result.stderr)
            assert "is still starting" in result.stderr and "Traceback" not in result.stderr
            assert "meshctl down" not in result.stderr
    finally:
        end_daemon(pid)
    nothing_left_running(root)
    stopped = meshctl(root, "status")
    assert stopped.code != 0 and "is still starting" not in stopped.stderr
