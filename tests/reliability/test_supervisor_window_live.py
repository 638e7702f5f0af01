"""The replacement window: `kill -9` of the supervisor under steady load, then `up` again.

The new supervisor replaces the processes the dead one left serving; requests sent while the
gateway is being replaced fail. This test measures how many and for how long, under open-loop
load of 40 req/s through the gateway, and bounds both (the numbers are in docs/reliability.md:
run with `-s` to print them)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from meshctl.runtime.state import StateDir
from tests.reliability.load import SteadyLoad, failures
from tests.runtime.helpers import gateway_port, meshctl, pid_alive, wait_until
from tests.runtime.test_up_failures_and_restarts import tiny_mesh

pytestmark = pytest.mark.slow


def test_replacement_window_after_kill_9_of_the_supervisor(tmp_path: Path) -> None:
    root = tiny_mesh(tmp_path)
    first = meshctl(root, "up", "--detach", "--gateway-port", "edge=0", "--timeout", "120")
    assert first.code == 0, first.stderr
    state = StateDir(root / ".meshctl")
    try:
        port = gateway_port(state.root, "edge")
        supervisor = int(state.pidfile.read_text().split()[0])
        load = SteadyLoad(f"http://127.0.0.1:{port}/products/1", rps=40, seconds=45).start()
        time.sleep(2)
        os.kill(supervisor, signal.SIGKILL)
        wait_until(lambda: not pid_alive(supervisor), what="supervisor gone")
        time.sleep(1)
        up_started = time.monotonic()
        again = meshctl(root, "up", "--detach", "--gateway-port", f"edge={port}", "--timeout", "120")
        up_done = time.monotonic()
        assert again.code == 0, again.stderr
        time.sleep(3)
        samples = load.stop()
        failed = failures(samples)
        sent = [s for s in samples if s.started >= up_started]
        window = (failed[-1].started - failed[0].started) if failed else 0.0
        print(f"\nreplacement: up took {up_done - up_started:.1f} s; {len(samples)} requests, "
              f"{len(failed)} failed over {window:.1f} s "
              f"(statuses {sorted({s.status for s in failed})}); {len(sent)} sent after up began")
        assert not failures(samples, before=up_started), "requests failed before up began"
        assert not failures(samples, after=up_done), "requests failed after up said ready"
        assert window < 15.0, window
    finally:
        meshctl(root, "down")
