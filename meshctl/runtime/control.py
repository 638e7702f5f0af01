"""Starting, watching and stopping the supervisor daemon from the CLI.

`up` spawns the daemon detached (its own session, output in logs/supervisor.log) and waits on
state.json until every process is ready, or names the first one that exited before it was.
`down` signals the daemon (only a verified one: see `ownership`) and waits for it, then kills
whatever a killed daemon left behind, found by the mark each of its processes carries.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from meshctl.errors import CheckFailed, UsageError
from meshctl.runtime.observed import Observed, read_observed
from meshctl.runtime.ownership import (
    alive,
    kill_supervised,
    mesh_running,
    running_supervisor,
    signal_supervisor,
    supervised,
    supervisor_argv,
)
from meshctl.runtime.plan import Plan, plan_digest, read_plan, write_plan
from meshctl.runtime.polling import poll
from meshctl.runtime.state import StateDir, StateFileError

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ProcessView:
    name: str
    role: str
    status: str
    ready: bool
    pid: int | None
    restarts: int
    last_exit: int | None


def views_of(observed: Observed | None) -> dict[str, ProcessView]:
    if observed is None:
        return {}
    return {
        name: ProcessView(
            name=name, role=p.role, status=p.status, ready=p.ready, pid=p.pid,
            restarts=p.restarts, last_exit=p.last_exit,
        )
        for name, p in observed.processes.items()
    }


def read_processes(state: StateDir) -> dict[str, ProcessView]:
    return views_of(read_observed(state))


def load_plan(state: StateDir) -> Plan:
    running = mesh_running(state)
    if running and not state.plan.exists() and _waiting_for_first_plan(state):
        raise UsageError(f"the mesh in {state.root} is still starting: its supervisor waits for "
                         "the plan `meshctl up` is compiling; try again in a moment")
    plan = read_plan(state, required=running)
    if plan is None:
        raise UsageError(f"nothing is running from {state.root} ({state.plan} is missing; "
                         "`meshctl up` starts the mesh)")
    return plan


def _waiting_for_first_plan(state: StateDir) -> bool:
    """The supervisor `up` starts before it compiles has run no plan yet: state.json is not
    written yet, or was written by an earlier supervisor, or by this one with no plan."""
    try:
        observed = read_observed(state)
    except StateFileError:
        return False  # damaged: read_plan's own error names what to do
    pid = running_supervisor(state)
    return observed is None or observed.supervisor.pid != pid or not observed.plan_digest


def start_daemon(state: StateDir, warm: bool = False) -> int:
    """Spawn the supervisor in its own session so it outlives the CLI; return its pid. `warm`:
    it starts its fork server at once and runs plan.json as soon as it is written."""
    state.ensure()
    with open(state.log("supervisor"), "ab") as out:
        proc = subprocess.Popen(
            supervisor_argv(state, warm),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def end_daemon(pid: int, timeout: float = 15.0) -> None:
    """Stop a daemon this process started and gave no plan (`up` found the policy or a port
    wrong while it warmed): it stops its fork server and exits. Signalled by the pid we hold
    (it is our child), as it may not have written its pid file yet."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
    _wait_gone(pid, timeout, still_ours=lambda: True)


def _wait_gone(pid: int, timeout: float, still_ours: Callable[[], bool]) -> None:
    """Wait for a signalled daemon to exit; SIGKILL it after `timeout` if it is still ours."""
    if not poll(lambda: not alive(pid), timeout=timeout, every=0.05):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if still_ours():
                os.kill(pid, signal.SIGKILL)
        poll(lambda: not alive(pid), timeout=5, every=0.05)


def publish_plan(state: StateDir, plan: Plan) -> None:
    """Write plan.json and wake the daemon (it would notice within half a second anyway)."""
    write_plan(state, plan)
    signal_supervisor(state, signal.SIGHUP)


def wait_settled(state: StateDir, timeout: float = 30.0) -> bool:
    """Until the daemon follows plan.json and has stopped what left it; False on timeout."""
    want = plan_digest(state)

    def settled() -> bool:
        observed = read_observed(state)
        return observed is not None and observed.plan_digest == want and not observed.retiring

    return poll(settled, timeout=timeout, every=0.05)


def tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def wait_ready(
    state: StateDir,
    names: set[str],
    *,
    timeout: float,
    progress: Progress | None = None,
    daemon_pid: int | None = None,
) -> None:
    """Block until the daemon follows plan.json and every process in `names` is ready.

    Raises CheckFailed naming the processes that exited before they were ready (with the last
    lines of their logs), or those still not ready after `timeout` seconds.
    """
    want_digest = plan_digest(state)
    announced: set[str] = set()

    def all_ready() -> bool:
        observed = read_observed(state)
        views = views_of(observed)
        # Only what this supervisor observed counts: a state.json left by an earlier run (same
        # plan, so the same digest) says nothing about the processes starting now.
        fresh = observed is not None and (
            daemon_pid is None or observed.supervisor.pid == daemon_pid
        )
        if observed is not None and fresh and observed.plan_digest == want_digest:
            failed = [v for n, v in views.items() if n in names and v.restarts > 0 and not v.ready]
            if failed:
                raise CheckFailed(_exited_message(state, failed))
            for n in sorted(names):
                v = views.get(n)
                if v and v.ready and n not in announced:
                    announced.add(n)
                    if progress:
                        progress(f"ready  {n} ({len(announced)}/{len(names)})")
            if announced >= names:
                return True
        if daemon_pid is not None and not alive(daemon_pid):
            raise CheckFailed(
                "the supervisor exited while starting; its log:\n" + tail(state.log("supervisor"))
            )
        return False

    if not poll(all_ready, timeout=timeout, every=0.1):
        waiting = sorted(names - announced)
        shown = ", ".join(waiting[:10]) + (" ..." if len(waiting) > 10 else "")
        raise CheckFailed(f"not ready after {timeout:.0f}s: {shown} (logs in {state.logs})")


def _exited_message(state: StateDir, failed: list[ProcessView]) -> str:
    parts = []
    for v in failed:
        log = state.log(v.name)
        parts.append(
            f"{v.name} ({v.role}) exited with code {v.last_exit} before it was ready; "
            f"last lines of {log}:\n{tail(log)}"
        )
    return "did not start: " + "\n".join(parts)


def stop_daemon(state: StateDir, timeout: float = 30.0) -> bool:
    """SIGTERM the (verified) daemon and wait until it has stopped everything; False if none ran."""
    pid = signal_supervisor(state, signal.SIGTERM)
    if pid is None:
        return False
    _wait_gone(pid, timeout, still_ours=lambda: running_supervisor(state) == pid)
    return True


def reap_leftovers(state: StateDir) -> list[str]:
    """Kill the processes a killed supervisor of this directory left running (by their mark).
    Never while a supervisor runs here: those are its processes."""
    if mesh_running(state):
        return []
    return kill_supervised(state)


def require_running(state: StateDir) -> None:
    """UsageError unless a supervisor runs on `state`, saying what does run if one died."""
    if mesh_running(state):
        return
    left = sorted(supervised(state))
    if left:
        shown = ", ".join(left[:6]) + (" ..." if len(left) > 6 else "")
        raise UsageError(
            f"the supervisor of {state.root} is not running, but {len(left)} process(es) it "
            f"started still run unsupervised ({shown}): `meshctl up` replaces them, "
            "`meshctl down` stops them"
        )
    raise UsageError(f"the mesh from {state.root} is not running (`meshctl up` starts it)")
