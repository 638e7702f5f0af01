"""Who owns a state directory, and which processes are ours: checked, never assumed.

The supervisor holds an exclusive `flock` on `supervisor.lock` for its whole life; the kernel
drops it when the process dies, however it dies. So "is a mesh running here" is "is the lock
held", whatever `supervisor.pid` says: a missing or garbled pid file never lets a second
supervisor start. The pid file (pid and start time) is a hint for finding the holder; a pid is
trusted, shown or signalled only when psutil finds that process running our supervisor's
command line for this directory with that start time. Non-positive pids are refused outright.

Every process the supervisor starts carries `MESHCTL_SUPERVISED_BY=<state dir>` and
`MESHCTL_PROCESS=<name>` in its environment: `down` finds what a killed supervisor left by
that mark, not by pids in a file (a recycled pid is someone else's). A sidecar forked from the
fork server (no exec, so the kernel shows the server's environment) writes its name over the
server's space-padded one in place (`proxy_addon.forkserver.mark_environ`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from meshctl.runtime.marks import NAME_ENV, OWNER_ENV
from meshctl.runtime.polling import poll
from meshctl.runtime.state import StateDir

SUPERVISOR_MODULE = "meshctl.runtime.daemon"  # the daemon's entry point (then `supervisor`)
LOCK_WAIT_S = 2.0  # a status probing the lock (shared, briefly) must not turn a starting daemon away


class AlreadyRunning(Exception):
    """Another supervisor holds this state directory."""


def supervisor_argv(state: StateDir, warm: bool = False) -> list[str]:
    return [sys.executable, "-m", SUPERVISOR_MODULE, "--state", str(state.root),
            *(["--warm"] if warm else [])]


def lock_held(state: StateDir) -> bool:
    """Is `supervisor.lock` held by a live process (the supervisor of this directory)?"""
    try:
        fd = os.open(state.lockfile, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a shared lock we may just have taken
    return False


@contextlib.contextmanager
def hold_lock(state: StateDir) -> Iterator[None]:
    """The supervisor's side: take the lock (or AlreadyRunning), write the pid file, and keep
    both until the block ends. The descriptor is not inherited by the processes it starts."""
    state.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(state.lockfile, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        def taken() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if _exclusive_holder(state):
                    raise AlreadyRunning(str(state.root)) from None
                return False
            return True

        if not poll(taken, timeout=LOCK_WAIT_S, every=0.05):
            raise AlreadyRunning(str(state.root))
        me = psutil.Process()
        from meshctl.fsio import write_atomic

        write_atomic(state.pidfile, f"{me.pid} {me.create_time():.3f}\n")
        try:
            yield
        finally:
            state.pidfile.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _exclusive_holder(state: StateDir) -> bool:
    return any(True for _ in _supervisors(state))


@dataclass(frozen=True)
class PidHint:
    pid: int
    started: float | None


def read_pid_hint(state: StateDir) -> PidHint | None:
    """The pid file's pid and start time; None when missing, garbled or not a positive pid."""
    try:
        parts = state.pidfile.read_text(encoding="utf-8").split()
        pid = int(parts[0])
        started = float(parts[1]) if len(parts) > 1 else None
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None
    return PidHint(pid, started) if pid > 0 else None


def is_our_supervisor(proc: psutil.Process, state: StateDir) -> bool:
    """Its command line runs the supervisor module on this very state directory."""
    try:
        args = proc.cmdline()
    except (psutil.Error, OSError):
        return False
    if SUPERVISOR_MODULE not in args or "--state" not in args:
        return False
    i = args.index("--state")
    if i + 1 >= len(args):
        return False
    try:
        return Path(args[i + 1]).resolve() == state.root.resolve()
    except OSError:
        return False


def _verified(hint: PidHint, state: StateDir) -> bool:
    try:
        proc = psutil.Process(hint.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if hint.started is not None and abs(proc.create_time() - hint.started) > 0.5:
            return False  # the pid was recycled
    except (psutil.Error, OSError):
        return False
    return is_our_supervisor(proc, state)


def _supervisors(state: StateDir) -> Iterator[psutil.Process]:
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and proc.status() != psutil.STATUS_ZOMBIE \
                    and is_our_supervisor(proc, state):
                yield proc


def running_supervisor(state: StateDir) -> int | None:
    """The pid of the supervisor holding this directory's lock, or None when none runs."""
    if not lock_held(state):
        return None
    hint = read_pid_hint(state)
    if hint is not None and _verified(hint, state):
        return hint.pid
    # The lock is held but the pid file is missing, garbled or names someone else: find the
    # holder by its command line.
    return next((p.pid for p in _supervisors(state)), None)


def mesh_running(state: StateDir) -> bool:
    """A supervisor owns this directory (even one whose pid we cannot find)."""
    return lock_held(state)


def alive(pid: int) -> bool:
    """Running and not a zombie (a zombie child of ours is reaped here)."""
    if pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def signal_supervisor(state: StateDir, sig: int) -> int | None:
    """Send `sig` to this directory's verified supervisor; its pid, or None if none runs."""
    pid = running_supervisor(state)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    return pid


def supervised(state: StateDir) -> dict[str, psutil.Process]:
    """Processes started by a supervisor of this directory that still run: name -> process."""
    root = str(state.root.resolve())
    found: dict[str, psutil.Process] = {}
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if env.get(OWNER_ENV) == root and proc.pid != os.getpid():
            with contextlib.suppress(psutil.Error):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    # A forked sidecar wrote its name over its fork server's padded one.
                    name = env.get(NAME_ENV, "").strip() or str(proc.pid)
                    found.setdefault(name, proc)
    return found


def kill_supervised(state: StateDir) -> list[str]:
    """SIGKILL the process group of every process a (dead) supervisor of this directory left."""
    killed: dict[str, psutil.Process] = {}
    for name, proc in sorted(supervised(state).items()):
        with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            killed[name] = proc
    psutil.wait_procs(list(killed.values()), timeout=5)  # their ports are free once they are gone
    return list(killed)
