"""Who owns a state directory: the supervisor's lock, never the pid file alone.

A pid file naming another process, -1 or 0 is neither trusted nor signalled; a missing or
garbled pid file never lets a second supervisor start, and `down` still finds the one running.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshctl.cli.main import main
from meshctl.runtime.control import reap_leftovers, start_daemon, stop_daemon, wait_ready
from meshctl.runtime.ownership import mesh_running, running_supervisor, supervised
from meshctl.runtime.state import StateDir
from tests.runtime.helpers import pid_alive
from tests.runtime.test_state_files import fill, sleeper


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """Somebody else's process: it must survive whatever meshctl does."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[StateDir]:
    state = StateDir(tmp_path / "state")
    fill(state, [sleeper(tmp_path)])
    pid = start_daemon(state)
    wait_ready(state, {"sleeper"}, timeout=30, daemon_pid=pid)
    yield state
    stop_daemon(state, timeout=15)
    reap_leftovers(state)


@pytest.mark.parametrize("hint", ["other", "-1", "0"])
def test_a_pid_file_naming_someone_else_is_not_trusted_nor_signalled(
    hint: str, tmp_path: Path, bystander: subprocess.Popen[bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = StateDir(tmp_path / "state")
    fill(state, [])
    state.pidfile.write_text(f"{bystander.pid if hint == 'other' else hint}\n")
    assert running_supervisor(state) is None
    assert main(["status", "--state", str(state.root), "--interval", "0"]) == 2
    assert "is not running" in capsys.readouterr().err
    assert main(["down", "--state", str(state.root)]) == 0
    assert "nothing was running" in capsys.readouterr().out
    assert bystander.poll() is None, "down signalled a process that is not our supervisor"


@pytest.mark.parametrize("pidfile", ["missing", "garbled", "other"])
def test_without_a_good_pid_file_the_lock_still_owns_the_directory(
    pidfile: str, running: StateDir, bystander: subprocess.Popen[bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    daemon = running_supervisor(running)
    assert daemon is not None
    if pidfile == "missing":
        running.pidfile.unlink()
    else:
        running.pidfile.write_text("12x\n" if pidfile == "garbled" else f"{bystander.pid}\n")

    # A second supervisor refuses to start on a directory whose lock is held.
    second = subprocess.run([sys.executable, "-m", "meshctl.runtime.daemon",
                             "--state", str(running.root)], capture_output=True, text=True,
                            timeout=30)
    assert second.returncode == 2 and "another supervisor already runs" in second.stderr
    assert main(["up", "--state", str(running.root), str(running.root.parent / "mesh.d")]) == 2
    assert "already running" in capsys.readouterr().err
    assert running_supervisor(running) == daemon, "found by its command line"

    children = supervised(running)
    assert main(["down", "--state", str(running.root)]) == 0
    assert not mesh_running(running) and not pid_alive(daemon)
    assert not [p for p in children.values() if pid_alive(p.pid)]
    assert bystander.poll() is None
