"""The supervisor's side of the sidecar fork server (`proxy_addon.forkserver`).

The supervisor makes itself a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`) and starts the
fork server once, with one end of a socket pair as its channel. Each sidecar the server forks
(twice: the middle process exits at once) is reparented to the supervisor, so it is the
supervisor's own child: `ForkedProcess` watches it through a pidfd on the event loop and reaps
it with `waitpid` (its real exit status), and its process group is signalled as before. The
fork server is a helper, not a parent: it can die or be restarted without touching a running
sidecar. When it is not there (starting failed, crashed and backing off, disabled with
MESHCTL_SIDECAR_SPAWN=exec), sidecars are exec'd as before.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from meshctl.runtime.forklaunch import Launched, launch_fork_server
from proxy_addon.forkwire import (
    MAX_LINE,
    MODULE,
    ForkReply,
    ForkRequest,
    WireError,
    decode_ready,
)

log = logging.getLogger("meshctl.supervisor")

READY_TIMEOUT_S = 60.0  # importing mitmproxy on a loaded 2-core machine can take many seconds
REQUEST_TIMEOUT_S = 10.0
RESTART_DELAY_S = (0.2, 1.0, 5.0)
PR_SET_CHILD_SUBREAPER = 36


class Child(Protocol):
    """What the supervisor needs of a process it runs: asyncio's Process, or a forked one."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


def become_subreaper() -> bool:
    """Orphaned descendants (the forked sidecars) become our children; False if refused."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def forkable(argv: tuple[str, ...], python: str) -> tuple[str, ...] | None:
    """The proxy_addon arguments of a sidecar command line the fork server can run (same
    interpreter, same flags), else None."""
    head = (python, "-OO", "-m", "proxy_addon")
    if tuple(argv[: len(head)]) != head:
        return None
    return tuple(argv[len(head):])


class WatchedChild:
    """A child of ours watched by a pidfd and reaped by us: the fork server, a forked sidecar."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[int] = self._loop.create_future()
        try:
            self._fd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            self._fd = None
            self._reap()
        else:
            self._loop.add_reader(self._fd, self._exited)

    def _exited(self) -> None:
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
        self._reap()

    def _reap(self) -> None:
        try:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = 255  # reaped elsewhere: its status is lost
        self._reaped()
        self.returncode = code
        if not self._done.done():
            self._done.set_result(code)

    def _reaped(self) -> None:
        pass

    async def wait(self) -> int:
        return await asyncio.shield(self._done)


class ForkedProcess(WatchedChild):
    """A sidecar forked by the server and adopted by us (we are a subreaper)."""

    live: ClassVar[set[int]] = set()  # forked sidecars being watched

    def __init__(self, pid: int) -> None:
        ForkedProcess.live.add(pid)
        super().__init__(pid)

    def _reaped(self) -> None:
        ForkedProcess.live.discard(self.pid)


@dataclass
class ForkServerState:
    status: str = "stopped"  # starting | ready | backoff | stopped | failed
    restarts: int = 0
    forks: int = 0


class ForkServer:
    """Start, ask, restart and stop the fork server; `spawn` returns None when it cannot help."""

    def __init__(self, python: str, env: dict[str, str], log_path: str,
                 on_change: Callable[[], None] = lambda: None,
                 launched: Launched | None = None) -> None:
        self.python, self.env, self.log_path = python, env, log_path
        self.on_change = on_change
        self.launched = launched  # one the daemon's entry point started before our imports
        if launched is not None:
            launched.adopted = True
        self.state = ForkServerState()
        self.proc: WatchedChild | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ready = asyncio.Event()
        self.waiting: collections.deque[asyncio.Future[ForkedProcess | str]] = collections.deque()
        self.answers: asyncio.Task[None] | None = None  # reads the server's answers in order
        self.task: asyncio.Task[None] | None = None
        self.stopping = False
        self.closing = False  # the supervisor stops: no more spawns (and none waits for us)
        self.in_flight = 0  # requests whose child may not be registered yet

    def _set(self, status: str) -> None:
        self.state.status = status
        self.on_change()

    def start(self) -> None:
        if self.task is None:
            self._set("starting")  # spawns asked for before the task runs wait for it
            self.task = asyncio.create_task(self._keep_running())

    async def _keep_running(self) -> None:
        failures = 0
        while not self.stopping:
            self._set("starting")
            started = time.monotonic()
            try:
                await self._launch()
            except (OSError, WireError, TimeoutError, asyncio.IncompleteReadError) as exc:
                await self._kill()
                if self.stopping:
                    break  # stopped while it warmed: nothing went wrong
                log.error("fork server did not start: %s; sidecars are exec'd meanwhile", exc)
            else:
                assert self.proc is not None
                rc = await self.proc.wait()
                if self.stopping:
                    break
                log.warning("fork server (pid %d) exited with %s; running sidecars are not "
                            "affected, new ones are exec'd until it is back", self.proc.pid, rc)
            self.ready.clear()
            self._close_channel()
            if self.stopping:
                break
            failures = 1 if time.monotonic() - started > 30 else failures + 1
            if failures > len(RESTART_DELAY_S):
                log.error("fork server failed %d times in a row; sidecars are exec'd from now on",
                          failures)
                self._set("failed")
                return
            self._set("backoff")
            self.state.restarts += 1
            await asyncio.sleep(RESTART_DELAY_S[failures - 1])
        self._set("stopped")

    async def _launch(self) -> None:
        launched, self.launched = self.launched, None
        if launched is None:
            launched = launch_fork_server(self.python, self.env, self.log_path)
        self.proc = WatchedChild(launched.pid)
        self.reader, self.writer = await asyncio.open_unix_connection(sock=launched.channel, limit=MAX_LINE)
        async with asyncio.timeout(READY_TIMEOUT_S):
            line = await self.reader.readuntil(b"\n")
        decode_ready(line)
        self.answers = asyncio.create_task(self._read_answers(self.reader))
        self._set("ready")
        self.ready.set()
        log.info("fork server ready (pid %d)", self.proc.pid)

    async def spawn(self, name: str, args: tuple[str, ...], cwd: str, env: dict[str, str],
                    log_path: str) -> ForkedProcess | None:
        """A sidecar forked from the server, or None (the caller execs it, and we said why).

        Requests are written at once, without waiting for earlier answers: the server forks
        all it has read back to back and answers in order (`_read_answers`)."""
        if self.closing:
            return None
        if self.state.status == "starting":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(READY_TIMEOUT_S):
                    await self._ready_or_down()
        if self.closing:
            return None
        if not self.ready.is_set() or self.writer is None:
            log.warning("%s: fork server %s; exec'ing the sidecar", name, self.state.status)
            return None
        request = ForkRequest(name=name, args=args, cwd=cwd, log=log_path, env=env)
        answer: asyncio.Future[ForkedProcess | str] = asyncio.get_running_loop().create_future()
        self.in_flight += 1
        try:
            self.waiting.append(answer)
            self.writer.write(request.encode())
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await self.writer.drain()
                result = await asyncio.shield(answer)
        except (OSError, TimeoutError) as exc:
            log.error("%s: fork server did not answer (%s); exec'ing the sidecar", name,
                      exc or type(exc).__name__)
            await self._abandon(f"a request timed out ({name})")
            return None
        except asyncio.CancelledError:
            answer.cancel()  # its child, once answered, is killed (`_read_answers`)
            raise
        finally:
            self.in_flight -= 1
        if isinstance(result, str):
            log.error("%s: fork server refused: %s; exec'ing the sidecar", name, result)
            return None
        self.state.forks += 1
        return result

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        """Match each answer to the oldest waiting request; the pid is watched as soon as read,
        so an answer nobody waits for any more still leaves a watched child."""
        try:
            while True:
                reply = ForkReply.decode(await reader.readuntil(b"\n"))
                if not self.waiting:
                    raise WireError("an answer to no request")
                answer = self.waiting.popleft()
                result: ForkedProcess | str = (ForkedProcess(reply.pid) if reply.pid is not None
                                               else reply.error or "no reason given")
                if answer.done():  # its spawn was cancelled: nobody would run the child
                    if isinstance(result, ForkedProcess):
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(result.pid, signal.SIGKILL)
                    continue
                answer.set_result(result)
        except (OSError, WireError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            if self.stopping:
                return
            log.error("fork server channel closed (%s)", exc or type(exc).__name__)
            self._fail_waiting("its channel closed")
            # Children forked for the requests left unanswered exit by themselves: their go
            # pipe closes with the server. A server still running is restarted.
            await self._kill()

    def _fail_waiting(self, why: str) -> None:
        """Every request still waiting is exec'd instead."""
        waiting, self.waiting = self.waiting, collections.deque()
        for answer in waiting:
            if not answer.done():
                answer.set_result(f"the fork server stopped answering: {why}")

    async def _abandon(self, why: str) -> None:
        """The server did not answer in time: the requests still waiting are exec'd, the server
        is killed (and restarted by `_keep_running`), and a child whose answer was sent but
        not read is killed before its replacement needs the ports."""
        self._fail_waiting(why)
        await self._kill()
        kill_unreported(spare=self.proc.pid if self.proc is not None else None)

    async def _ready_or_down(self) -> None:
        while self.state.status == "starting" and not self.ready.is_set() and not self.closing:
            await asyncio.sleep(0.02)

    def _close_channel(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
        if self.answers is not None and self.answers is not asyncio.current_task():
            self.answers.cancel()
        self.answers = None
        self._fail_waiting("its channel closed")

    async def _kill(self) -> None:
        self.ready.clear()
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def stop(self) -> None:
        self.stopping = True
        self.ready.clear()
        self._close_channel()  # end of file: the server exits by itself
        proc = self.proc
        if proc is not None and proc.returncode is None:
            try:
                async with asyncio.timeout(2.0):
                    await proc.wait()
            except TimeoutError:
                await self._kill()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


def kill_unreported(spare: int | None = None) -> None:
    """A sidecar forked for a request whose answer we never read is our child (subreaper)
    that nobody watches: kill it before its replacement needs the ports. Every answer read is
    watched at once (`ForkedProcess.live`), so such children are those running the fork
    server's code that are neither watched nor the server (`spare`): no need to tell them by
    name, which they may not have written yet."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error, OSError):
                if child.pid in ForkedProcess.live or child.pid == spare:
                    continue  # watched, or the server
                if MODULE in child.cmdline():
                    os.killpg(child.pid, signal.SIGKILL)
