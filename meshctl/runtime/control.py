"""Starting, watching and stopping the supervisor daemon from the CLI.

`up` spawns the daemon detached (its own session, output in logs/supervisor.log) and waits on
state.json until every process is ready, or names the first one that exited before it was.
`down` signals the daemon and waits for it, then makes sure no process it started is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshctl.errors import CheckFailed, UsageError
from meshctl.runtime.plan import Plan
from meshctl.runtime.state import StateDir, read_json, write_json
from meshctl.runtime.supervisor import plan_digest

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


def read_processes(state: StateDir) -> dict[str, ProcessView]:
    raw = read_json(state.state, {}) or {}
    return {
        name: ProcessView(
            name=name,
            role=p.get("role", "?"),
            status=p.get("status", "?"),
            ready=bool(p.get("ready")),
            pid=p.get("pid"),
            restarts=int(p.get("restarts", 0)),
            last_exit=p.get("last_exit"),
        )
        for name, p in (raw.get("processes") or {}).items()
    }


def load_plan(state: StateDir) -> Plan:
    raw = read_json(state.plan)
    if raw is None:
        raise UsageError(f"nothing is running from {state.root} (no plan.json; run `meshctl up`)")
    return Plan.from_json(raw)


def start_daemon(state: StateDir) -> int:
    """Spawn the supervisor in its own session so it outlives the CLI; return its pid."""
    state.ensure()
    with open(state.log("supervisor"), "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshctl.runtime.supervisor", "--state", str(state.root)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def publish_plan(state: StateDir, plan: Plan) -> None:
    """Write plan.json and wake the daemon (it would notice within half a second anyway)."""
    write_json(state.plan, plan.to_json())
    pid = state.daemon_pid()
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGHUP)


def wait_settled(state: StateDir, timeout: float = 30.0) -> bool:
    """Until the daemon follows plan.json and has stopped what left it; False on timeout."""
    want = plan_digest(state)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = read_json(state.state, {}) or {}
        if raw.get("plan_digest") == want and not raw.get("retiring"):
            return True
        time.sleep(0.05)
    return False


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
    deadline = time.monotonic() + timeout
    announced: set[str] = set()
    while True:
        raw = read_json(state.state, {}) or {}
        views = read_processes(state)
        following = raw.get("plan_digest") == want_digest
        if following:
            failed = [
                v for n, v in views.items() if n in names and v.restarts > 0 and not v.ready
            ]
            if failed:
                raise CheckFailed(_exited_message(state, failed))
            for n in sorted(names):
                v = views.get(n)
                if v and v.ready and n not in announced:
                    announced.add(n)
                    if progress:
                        progress(f"ready  {n} ({len(announced)}/{len(names)})")
            if announced >= names:
                return
        if daemon_pid is not None and not _alive(daemon_pid):
            raise CheckFailed(
                "the supervisor exited while starting; its log:\n" + tail(state.log("supervisor"))
            )
        if time.monotonic() > deadline:
            waiting = sorted(names - announced)
            shown = ", ".join(waiting[:10]) + (" ..." if len(waiting) > 10 else "")
            raise CheckFailed(
                f"not ready after {timeout:.0f}s: {shown} (logs in {state.logs})"
            )
        time.sleep(0.1)


def _exited_message(state: StateDir, failed: list[ProcessView]) -> str:
    parts = []
    for v in failed:
        log = state.log(v.name)
        parts.append(
            f"{v.name} ({v.role}) exited with code {v.last_exit} before it was ready; "
            f"last lines of {log}:\n{tail(log)}"
        )
    return "did not start: " + "\n".join(parts)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def stop_daemon(state: StateDir, timeout: float = 30.0) -> bool:
    """SIGTERM the daemon and wait until it has stopped everything; False if none ran."""
    pid = state.daemon_pid()
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    state.pidfile.unlink(missing_ok=True)
    return True


def reap_leftovers(state: StateDir) -> list[str]:
    """Kill processes state.json records that still run as we started them (daemon killed).

    A pid is only touched when its command line is the one the plan gave it: a recycled pid
    belongs to someone else.
    """
    raw: dict[str, Any] = read_json(state.state, {}) or {}
    plan_raw = read_json(state.plan, {}) or {}
    argv_of = {p["name"]: p["argv"] for p in plan_raw.get("processes", [])}
    killed = []
    for name, proc in (raw.get("processes") or {}).items():
        pid = proc.get("pid")
        if not pid or name not in argv_of or not _started_by_us(pid, argv_of[name], state):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
            killed.append(name)
    return killed


def _started_by_us(pid: int, argv: list[str], state: StateDir) -> bool:
    """Its command line is the plan's, or (a sidecar re-executes itself) names the same
    files in this state directory."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    args = [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]
    if args == argv:
        return True
    ours = {a for a in argv if a.startswith(str(state.root))}
    return bool(ours) and ours <= set(args)
