"""The supervisor daemon with real processes: readiness, restart with backoff, clean stop."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from meshctl.errors import CheckFailed
from meshctl.runtime.control import (
    read_processes,
    reap_leftovers,
    start_daemon,
    stop_daemon,
    wait_ready,
)
from meshctl.runtime.plan import APP, Plan, ProcessSpec, write_plan
from meshctl.runtime.ports import PortBook, port_is_free
from meshctl.runtime.state import StateDir
from meshctl.runtime.topology import Topology
from tests.runtime.helpers import pid_alive, wait_until


def http_server(name: str, port: int, cwd: Path) -> ProcessSpec:
    return ProcessSpec(
        name=name,
        role=APP,
        argv=(sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"),
        env={},
        cwd=str(cwd),
        ready_url=f"http://127.0.0.1:{port}/",
    )


def plan_of(state: StateDir, processes: list[ProcessSpec]) -> None:
    plan = Plan(
        policy_dir="-", revision="r1", topology=Topology((), ()), processes=processes
    )
    state.ensure()
    write_plan(state, plan)


@pytest.fixture
def state(tmp_path: Path):  # type: ignore[no-untyped-def]
    sdir = StateDir(tmp_path / "state")
    yield sdir
    stop_daemon(sdir, timeout=15)
    reap_leftovers(sdir)


def test_restarts_a_killed_process_and_stops_everything(state: StateDir, tmp_path: Path) -> None:
    ports = PortBook(tmp_path / "ports.json")
    p1, p2 = ports.assign("a"), ports.assign("b")
    plan_of(state, [http_server("a", p1, tmp_path), http_server("b", p2, tmp_path)])
    daemon = start_daemon(state)
    wait_ready(state, {"a", "b"}, timeout=30, daemon_pid=daemon)
    first = read_processes(state)["a"]
    assert first.pid is not None and first.restarts == 0

    os.killpg(first.pid, signal.SIGKILL)
    wait_until(lambda: read_processes(state)["a"].restarts == 1, timeout=20)
    wait_until(lambda: read_processes(state)["a"].ready, timeout=20)
    again = read_processes(state)["a"]
    assert again.pid is not None and again.pid != first.pid
    assert again.last_exit == -signal.SIGKILL
    assert not port_is_free(p1), "restarted on the same port"

    pids = [again.pid, read_processes(state)["b"].pid]
    assert stop_daemon(state, timeout=20)
    assert not any(pid_alive(p) for p in pids if p)
    assert read_processes(state)["a"].status == "stopped"
    assert port_is_free(p1) and port_is_free(p2)


def test_names_a_process_that_exits_before_it_is_ready(state: StateDir, tmp_path: Path) -> None:
    port = PortBook(tmp_path / "ports.json").assign("ok")
    broken = ProcessSpec(
        name="broken",
        role=APP,
        argv=(sys.executable, "-c", "import sys; print('no config, giving up'); sys.exit(3)"),
        env={},
        cwd=str(tmp_path),
        ready_port=port + 1,
    )
    plan_of(state, [http_server("ok", port, tmp_path), broken])
    daemon = start_daemon(state)
    with pytest.raises(CheckFailed) as info:
        wait_ready(state, {"ok", "broken"}, timeout=30, daemon_pid=daemon)
    message = str(info.value)
    assert "broken (app) exited with code 3" in message
    assert "no config, giving up" in message


def test_follows_a_rewritten_plan(state: StateDir, tmp_path: Path) -> None:
    ports = PortBook(tmp_path / "ports.json")
    p1, p2 = ports.assign("a"), ports.assign("b")
    plan_of(state, [http_server("a", p1, tmp_path)])
    daemon = start_daemon(state)
    wait_ready(state, {"a"}, timeout=30, daemon_pid=daemon)
    pid_a = read_processes(state)["a"].pid
    plan_of(state, [http_server("b", p2, tmp_path)])  # a removed, b added
    wait_ready(state, {"b"}, timeout=30, daemon_pid=daemon)
    wait_until(lambda: "a" not in read_processes(state), timeout=20)
    assert pid_a is not None and not pid_alive(pid_a)


def test_rotate_log_copies_and_truncates_in_place(tmp_path: Path) -> None:
    from meshctl.runtime.supervisor import rotate_log

    log = tmp_path / "x.log"
    with open(log, "ab") as writer:  # a process holding its log open for append
        writer.write(b"a" * 100)
        writer.flush()
        assert not rotate_log(log, 1000)
        assert rotate_log(log, 50)
        writer.write(b"after\n")
        writer.flush()
    assert (tmp_path / "x.log.1").read_bytes() == b"a" * 100
    assert log.read_bytes() == b"after\n"


def test_a_command_that_does_not_exist_is_named_with_the_reason(
    state: StateDir, tmp_path: Path
) -> None:
    missing = ProcessSpec(
        name="ghost", role=APP, argv=("no-such-program-here", "--serve"), env={},
        cwd=str(tmp_path), ready_port=1,
    )
    plan_of(state, [missing])
    daemon = start_daemon(state)
    with pytest.raises(CheckFailed) as info:
        wait_ready(state, {"ghost"}, timeout=30, daemon_pid=daemon)
    assert "ghost (app) exited with code 127" in str(info.value)
    assert "cannot start no-such-program-here" in str(info.value)
