"""Every kind of damage to every state file, for every command that reads it: exit 2 naming the
file and what to do, never a traceback; nothing in the state directory is changed, and nothing
is left running."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshctl.cli.main import main
from meshctl.runtime.applied import APPLIED, HISTORY, Applied, History, HistoryEntry
from meshctl.runtime.control import reap_leftovers, start_daemon, stop_daemon, wait_ready, wait_settled
from meshctl.runtime.observed import OBSERVED
from meshctl.runtime.ownership import mesh_running, supervised
from meshctl.runtime.plan import APP, PLAN, Plan, ProcessSpec
from meshctl.runtime.ports import PORTS, Ports
from meshctl.runtime.state import Record, StateDir, write_record
from meshctl.runtime.topology import Topology

FILES: dict[str, Record] = {
    "plan.json": PLAN, "state.json": OBSERVED, "ports.json": PORTS,
    "applied.json": APPLIED, "history.json": HISTORY,
}
DAMAGES = ("truncated", "not-json", "foreign-version", "wrong-shape", "missing")

# command -> the state files it reads; "optional" ones may be missing (first run, nothing
# applied yet): the command then goes on, so those cells are not errors.
READS: dict[str, dict[str, bool]] = {  # file -> required
    "status": {"plan.json": True, "state.json": True, "applied.json": False},
    "apply": {"plan.json": True, "state.json": True, "ports.json": True, "applied.json": False,
              "history.json": False},
    "rollback": {"plan.json": True, "state.json": True, "ports.json": True, "applied.json": False,
                 "history.json": True},
    "history": {"history.json": False, "applied.json": False},
    "up": {"ports.json": False, "history.json": False},  # on a stopped mesh
}
CASES = [
    (command, name, damage)
    for command, files in READS.items()
    for name, required in files.items()
    for damage in DAMAGES
    if damage != "missing" or required
]


def damage(path: Path, kind: str) -> None:
    text = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(text[: len(text) // 2])
    elif kind == "not-json":
        path.write_bytes(b"\x00\xffnot json at all {{")
    elif kind == "foreign-version":
        raw = json.loads(text)
        raw["version"] = "meshctl.dev/state/somethingelse/v9"
        path.write_text(json.dumps(raw))
    elif kind == "wrong-shape":
        raw = json.loads(text)
        path.write_text(json.dumps({"version": raw["version"], "nonsense": [1, 2]}))
    else:
        path.unlink()


def snapshot(root: Path, keep: str = "") -> dict[str, bytes]:
    """Every file but the supervisor's own (its log, pid, state.json unless it is `keep`)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.parent.name != "logs" and not p.name.endswith(".tmp")
            and p.name not in {"supervisor.pid", "state.json"} - {keep}}


def fill(state: StateDir, processes: list[ProcessSpec]) -> None:
    state.ensure()
    write_record(state.plan, PLAN, Plan(policy_dir=str(state.root.parent / "mesh.d"), revision="r2",
                                        topology=Topology((), ()), processes=processes))
    write_record(state.ports, PORTS, Ports({"x/app": 12345}))
    write_record(state.applied, APPLIED, Applied("r2", "sha256:0", {}, ()))
    write_record(state.history, HISTORY, History([HistoryEntry("r1", "up", time.time()),
                                                  HistoryEntry("r2", "apply", time.time())]))


def sleeper(tmp: Path) -> ProcessSpec:
    return ProcessSpec(name="sleeper", role=APP, env={}, cwd=str(tmp),
                       argv=(sys.executable, "-c", "import time; time.sleep(300)"))


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StateDir]:
    """A supervisor running one process, with every state file written."""
    tmp = tmp_path_factory.mktemp("running")
    state = StateDir(tmp / "state")
    fill(state, [sleeper(tmp)])
    pid = start_daemon(state)
    wait_ready(state, {"sleeper"}, timeout=30, daemon_pid=pid)
    yield state
    survived = mesh_running(state)
    stop_daemon(state, timeout=15)
    reap_leftovers(state)
    log = state.log("supervisor").read_text()
    assert survived and "Traceback" not in log, f"the supervisor did not survive the damage:\n{log}"


def run(command: str, state: StateDir, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    args = {"apply": ["apply", "--allow-dirty"], "status": ["status", "--interval", "0"]}.get(
        command, [command])
    code = main([*args, "--state", str(state.root)] +
                (["--dir", str(state.root.parent / "mesh.d")] if command != "up" else
                 [str(state.root.parent / "no-policy-here")]))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("command", "name", "kind"), CASES,
                         ids=[f"{c}-{n}-{d}" for c, n, d in CASES])
def test_damaged_state_file_is_exit_2_naming_it(
    command: str, name: str, kind: str, running: StateDir, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if command == "up":  # up on a stopped mesh: a copy of the files, no supervisor
        state = StateDir(tmp_path / "state")
        fill(state, [])
        write_record(state.state, OBSERVED, _stopped())
    else:
        state = running
        assert wait_settled(state), "the supervisor follows the plan again"
    path = state.root / name
    original = path.read_bytes()
    damage(path, kind)
    before = snapshot(state.root, keep=name)
    try:
        code, stderr = run(command, state, capsys)
        after = snapshot(state.root, keep=name)
    finally:
        path.write_bytes(original)
    assert code == 2, stderr
    assert str(path) in stderr, stderr
    assert "Traceback" not in stderr
    assert any(f"meshctl {verb}" in stderr for verb in ("down", "up", "apply", "rollback")) \
        or "move it aside" in stderr, stderr  # says what to do
    assert after == before, "a command changed the state directory it refused"
    if command == "up":
        assert not mesh_running(state) and not supervised(state)


def _stopped() -> object:
    from meshctl.runtime.observed import Observed, SupervisorRecord

    return Observed(supervisor=SupervisorRecord(pid=None, stopped=True))


def test_down_stops_the_mesh_whatever_the_state_files_hold(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    fill(state, [sleeper(tmp_path)])
    pid = start_daemon(state)
    wait_ready(state, {"sleeper"}, timeout=30, daemon_pid=pid)
    for name in FILES:
        damage(state.root / name, "truncated")
    damaged = snapshot(state.root)
    try:
        assert main(["down", "--state", str(state.root)]) == 0
        assert not mesh_running(state) and not supervised(state)
        assert snapshot(state.root) == damaged
    finally:
        stop_daemon(state, timeout=15)
        reap_leftovers(state)
