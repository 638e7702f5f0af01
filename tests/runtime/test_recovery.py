"""Faults around the supervisor: a damaged sidecar config survives a restart, `up | tee` then
Ctrl-C stops cleanly, and `kill -9` of the supervisor then `up` again loses no request beyond
the restart of what `up` replaces, with `status` telling the truth throughout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshctl.runtime.ownership import mesh_running, supervised
from meshctl.runtime.state import StateDir
from tests.runtime.helpers import Load, gateway_port, get, meshctl, pid_alive, recorded_pids, wait_until
from tests.runtime.test_up_failures_and_restarts import processes, tiny_mesh


def up(root: Path) -> None:
    result = meshctl(root, "up", "--detach", "--gateway-port", "edge=0", "--timeout", "120")
    assert result.code == 0, result.stderr


@pytest.mark.slow
def test_a_damaged_sidecar_config_is_restored_when_the_sidecar_restarts(tmp_path: Path) -> None:
    root = tiny_mesh(tmp_path)
    up(root)
    try:
        state = root / ".meshctl"
        config = state / "sidecars" / "catalog-v1-0" / "config.json"
        good = config.read_bytes()
        config.write_bytes(good[: len(good) // 3])  # truncated, as a full disk would leave it
        before = processes(root)["catalog-v1-0.sidecar"]
        os.killpg(before["pid"], signal.SIGKILL)
        wait_until(lambda: processes(root)["catalog-v1-0.sidecar"]["restarts"] == 1, what="noticed")
        wait_until(lambda: processes(root)["catalog-v1-0.sidecar"]["ready"], timeout=60,
                   what="the sidecar serves again")
        assert config.read_bytes() == good
        log = (state / "logs" / "supervisor.log").read_text()
        assert f"{config} was damaged" in log and "restored from" in log
        assert "restored from" in (state / "logs" / "catalog-v1-0.sidecar.log").read_text()
        port = gateway_port(state, "edge")
        wait_until(lambda: get("127.0.0.1", port, "/products/1")[0] == 200, timeout=30)
    finally:
        meshctl(root, "down")


@pytest.mark.slow
def test_up_piped_into_tee_then_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """The shell's Ctrl-C reaches both: the reader of `up`'s output dies first."""
    root = tiny_mesh(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "MESHCTL_STATE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshctl", "up", "--gateway-port", "edge=0"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + 120
    while b"running in the foreground" not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    assert b"running in the foreground" in seen, seen.decode(errors="replace")
    state = StateDir(root / ".meshctl")
    pids = recorded_pids(state.root)
    proc.stdout.close()  # `tee` is gone: every later write of `up` hits a closed pipe
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            meshctl(root, "down")
    assert not mesh_running(state)
    assert not [p for p in pids if pid_alive(p)], "the mesh kept running after Ctrl-C"


def status_json(root: Path) -> tuple[int, str]:
    result = meshctl(root, "status", "--format", "json", "--interval", "0")
    return result.code, result.stdout if result.code == 0 else result.stderr


@pytest.mark.slow
def test_kill_9_of_the_supervisor_then_up_again(tmp_path: Path) -> None:
    root = tiny_mesh(tmp_path)
    up(root)
    state = StateDir(root / ".meshctl")
    try:
        port = gateway_port(state.root, "edge")
        supervisor = int(state.pidfile.read_text().split()[0])
        with Load(port, path="/products/1", threads=2, pause=0.02, max_requests=3000) as load:
            wait_until(lambda: len(load.statuses) > 20, what="load flows")
            os.kill(supervisor, signal.SIGKILL)
            wait_until(lambda: not pid_alive(supervisor), what="supervisor gone")
            # status tells the truth: no supervisor, but its processes still serve.
            code, text = status_json(root)
            assert code == 2 and "is not running" in text and "still run unsupervised" in text, text
            served = len(load.statuses)
            wait_until(lambda: len(load.statuses) > served + 20, what="still serving unsupervised")
            assert not load.failures and set(load.statuses) == {200}

            again = meshctl(root, "up", "--detach", "--gateway-port", f"edge={port}", "--timeout", "120")
            assert again.code == 0, again.stderr
            assert "replacing 3 process(es) left running by a supervisor that died" in again.stderr
            # Ready means ready: from now on not one request fails.
            mark_ok, mark_failed = len(load.statuses), len(load.failures)
            code, text = status_json(root)
            assert code == 0, text
            view = json.loads(text)
            assert all(s["healthy"] for s in view["sidecars"]), view
            wait_until(lambda: len(load.statuses) > mark_ok + 50, what="load after up")
        after_ok = load.statuses[mark_ok:]
        assert len(load.failures) == mark_failed, load.failures[mark_failed:]
        assert set(after_ok) == {200}, sorted(set(after_ok))
        assert not supervised(state) or mesh_running(state)
    finally:
        meshctl(root, "down")
