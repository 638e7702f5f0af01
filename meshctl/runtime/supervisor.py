"""The supervisor daemon: keeps the plan's processes running until told to stop.

Run as `python -m meshctl.runtime.daemon --state DIR` (detached by `meshctl up`). It starts
every process of plan.json in its own process group with its output in logs/<name>.log,
probes readiness, restarts crashed processes with exponential backoff, follows plan.json when
`apply` rewrites it (SIGHUP, or noticed within half a second), renews sidecar certificates,
and on SIGTERM/SIGINT stops everything it started (SIGTERM to each group, SIGKILL after a grace
period). What it observes goes to state.json for `status`, `up` and `apply` to read.

Sidecars are forked from a warm fork server (`forkclient`, `proxy_addon.forkserver`) started at
the first sidecar, or with `--warm` by the entry point before it imports this module (`meshctl
up` starts the daemon that way before it compiles, so the server warms meanwhile); the
supervisor is a child subreaper, so a forked sidecar is its own child all the same. Without the
fork server (it failed, or MESHCTL_SIDECAR_SPAWN=exec) they are exec'd. An app starts once its
sidecar has been started (on two cores the cheap forks go first instead of queueing behind the
apps' imports), or earlier on a core the warming server leaves idle (`_sidecar_started`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from meshctl.runtime.file_sd import write_targets
from meshctl.runtime.forkclient import Child, ForkedProcess, ForkServer, become_subreaper, forkable
from meshctl.runtime.forklaunch import FORKSERVER, Launched, forking_wanted, server_env
from meshctl.runtime.marks import NAME_ENV, OWNER_ENV
from meshctl.runtime.observed import (
    ForkServerRecord,
    Observed,
    ProcessRecord,
    SupervisorRecord,
    write_observed,
)
from meshctl.runtime.ownership import AlreadyRunning, hold_lock
from meshctl.runtime.plan import APP, GATEWAY, PLAN, SIDECAR, Plan, ProcessSpec, digest_of
from meshctl.runtime.probe import probe_http, probe_tcp
from meshctl.runtime.state import StateDir, StateFileError, read_record

log = logging.getLogger("meshctl.supervisor")

BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 15.0
STABLE_AFTER_S = 30.0  # a process that ran this long has its backoff reset
STOP_GRACE_S = 8.0  # sidecars drain requests in flight on SIGTERM before exiting
PLAN_POLL_S = 0.3
FIRST_PLAN_POLL_S = 0.05  # `up` writes the first plan.json while we wait: no signal to rely on
WARM_WAIT_S = 600.0  # a `--warm` daemon given no plan in this long (its `up` was killed) exits
APP_HOLD_S = 10.0  # an app waits at most this long for its sidecar to be started
EARLY_APP_CHECK_S = 0.02  # how often an app held for its sidecar looks for a free core
LOG_MAX_BYTES = 32 * 1024 * 1024  # access logs grow with traffic: keep one old copy, like logrotate
LOG_CHECK_S = 10.0
RENEW_EVERY_S = 60.0  # MESHCTL_RENEW_INTERVAL (seconds) overrides: tests, short-lived certs
STRAY_CHECK_S = 5.0  # reap orphans adopted as subreaper that are none of ours


@dataclass
class Managed:
    spec: ProcessSpec
    proc: Child | None = None
    status: str = "starting"  # starting | ready | unready | backoff | stopping | stopped
    restarts: int = 0
    last_exit: int | None = None
    started_at: float = 0.0
    since: float = field(default_factory=time.time)
    stopping: bool = False
    task: asyncio.Task[None] | None = None
    probe_task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    spawned: asyncio.Event = field(default_factory=asyncio.Event)  # its first start happened

    def set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self.since = time.time()

    def record(self) -> ProcessRecord:
        alive = self.proc is not None and self.proc.returncode is None
        return ProcessRecord(
            role=self.spec.role,
            pid=self.proc.pid if alive and self.proc else None,
            status=self.status,
            ready=self.status == "ready",
            restarts=self.restarts,
            last_exit=self.last_exit,
            started_at=self.started_at,
            since=self.since,
            forked=isinstance(self.proc, ForkedProcess),
        )


class Supervisor:
    def __init__(self, state: StateDir, warm: bool = False, launched: Launched | None = None
                 ) -> None:
        self.state = state
        self.warm = warm  # start the fork server now, before the first plan
        self.launched = launched  # the fork server our entry point started (`daemon`)
        self.procs: dict[str, Managed] = {}
        self.retiring: set[str] = set()  # names being stopped after leaving the plan
        self.plan_digest = ""
        self.sidecar_of: dict[str, str] = {}  # process name -> compiled config key, for sidecars
        self.sidecar_of_app: dict[str, str] = {}  # app process name -> its sidecar's process name
        # Apps started before their sidecar while the fork server warms (`_sidecar_started`)
        self.early_apps: list[str] = []
        self.early_slots = max(0, len(os.sched_getaffinity(0)) - 1)
        self.stop_event = asyncio.Event()
        self.reload_event = asyncio.Event()
        self.dirty = asyncio.Event()
        # Forking needs us to be a subreaper (forked sidecars are reparented to us).
        self.can_fork = forking_wanted() and become_subreaper()
        self.forks: ForkServer | None = None
        self.children: list[Child] = []  # every child we await (the stray reaper spares them)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_event.set)
        writer = asyncio.create_task(self._write_state_loop())
        renewer = asyncio.create_task(self._renew_loop())
        rotator = asyncio.create_task(self._rotate_loop())
        strays = asyncio.create_task(self._reap_strays_loop())
        if not self.can_fork:
            log.info("sidecars are exec'd (%s)", "MESHCTL_SIDECAR_SPAWN=exec"
                     if not forking_wanted() else "cannot become a child subreaper")
        if (self.warm or self.launched) and self.can_fork:
            self._start_fork_server(sys.executable)
        elif self.launched is not None:
            self.launched.kill()  # we cannot adopt what it would fork
        started = time.monotonic()
        try:
            self._reconcile()
            while not self.stop_event.is_set():
                first = not self.plan_digest
                if first and time.monotonic() - started > WARM_WAIT_S:
                    log.error("no plan.json after %.0fs; exiting", WARM_WAIT_S)
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FIRST_PLAN_POLL_S if first else PLAN_POLL_S):
                        await self._wait_any(self.stop_event, self.reload_event)
                self.reload_event.clear()
                if not self.stop_event.is_set():
                    self._reconcile()
            log.info("stopping every process")
            await self._stop_all()
        finally:
            if self.forks is not None:
                await self.forks.stop()
            strays.cancel()
            renewer.cancel()
            rotator.cancel()
            writer.cancel()
            self._write_state(stopped=True)
            self._write_targets(None)

    @staticmethod
    async def _wait_any(*events: asyncio.Event) -> None:
        waiters = [asyncio.create_task(e.wait()) for e in events]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    # --- following the plan -----------------------------------------------------------------

    def _reconcile(self) -> None:
        try:
            text = self.state.plan.read_bytes()
        except FileNotFoundError:
            return
        digest = digest_of(text)
        if digest == self.plan_digest:
            return
        try:
            plan: Plan = read_record(self.state.plan, PLAN, required=True)
        except StateFileError as exc:
            log.error("keeping the current processes: %s", exc)
            self.plan_digest = digest  # state.json says which plan.json it looked at
            self.dirty.set()
            return
        self.sidecar_of = {s.process: s.sidecar for s in plan.sidecars}
        self.sidecar_of_app = {s.app_process: s.process for s in plan.sidecars if s.app_process}
        wanted = {p.name: p for p in plan.processes}
        for name in list(self.procs):
            if name not in wanted or wanted[name] != self.procs[name].spec:
                log.info("stopping %s (no longer in the plan, or changed)", name)
                managed = self.procs.pop(name)
                asyncio.create_task(self._retire(managed))
        for name, spec in wanted.items():
            if name not in self.procs:
                self._start(spec)
        self._write_targets(plan)
        self.plan_digest = digest
        self.dirty.set()

    def _write_targets(self, plan: Plan | None) -> None:
        """Keep Prometheus' file_sd targets in step with the plan (empty once stopped)."""
        try:
            write_targets(self.state, plan)
        except OSError as exc:
            log.error("cannot write the Prometheus target file: %s", exc)

    async def _retire(self, m: Managed) -> None:
        self.retiring.add(m.spec.name)
        try:
            await self._stop(m)
        finally:
            self.retiring.discard(m.spec.name)
            self.dirty.set()

    def _start(self, spec: ProcessSpec) -> None:
        managed = Managed(spec=spec)
        self.procs[spec.name] = managed
        managed.task = asyncio.create_task(self._keep_running(managed))
        managed.probe_task = asyncio.create_task(self._probe_loop(managed))

    # --- one process ------------------------------------------------------------------------

    async def _keep_running(self, m: Managed) -> None:
        failures = 0
        if m.spec.role == APP:
            await self._sidecar_started(m)
        while not m.stopping:
            if m.restarts:
                # A first start runs a config written whole for this plan (`up` writes every
                # sidecar's, `apply` a new one's); one damaged since fails that start, and the
                # check comes with the restart. Checking first would import the contract's
                # models on the way to the first fork.
                self._restore_config_if_damaged(m.spec)
            try:
                m.proc = await self._spawn(m)
            except _Stopping:
                break
            except OSError as exc:
                log.error("%s: cannot start %s: %s", m.spec.name, m.spec.argv[0], exc)
                with contextlib.suppress(OSError), open(self.state.log(m.spec.name), "a") as out:
                    out.write(f"cannot start {m.spec.argv[0]}: {exc}\n")
                m.proc = None
                rc: int | None = 127
            else:
                if m.stopping:  # _stop ran while it was being forked: it has to go again
                    _signal_group(m.proc.pid, signal.SIGKILL)
                m.started_at = time.time()
                m.spawned.set()
                m.set_status("starting")
                how = "forked" if isinstance(m.proc, ForkedProcess) else "started"
                log.info("%s: %s pid %d", m.spec.name, how, m.proc.pid)
                self.dirty.set()
                rc = await m.proc.wait()
                # The app may have left children in its group: they go with it.
                _signal_group(m.proc.pid, signal.SIGKILL)
            if m.stopping:
                break
            m.last_exit = rc
            m.restarts += 1
            ran = time.time() - m.started_at if m.proc else 0.0
            failures = 1 if ran >= STABLE_AFTER_S else failures + 1
            # The first restart is immediate (a forked sidecar is back in a fraction of a
            # second); a process that keeps failing waits 0.5 s, doubling up to 15 s.
            delay = 0.0 if failures == 1 else min(BACKOFF_BASE_S * 2 ** (failures - 2), BACKOFF_MAX_S)
            log.warning(
                "%s: exited with %s after %.1fs; restart in %.1fs", m.spec.name, rc, ran, delay
            )
            m.set_status("backoff")
            self.dirty.set()
            m.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await m.wake.wait()

    async def _sidecar_started(self, app: Managed) -> None:
        """Until the app's sidecar has been started (forked: milliseconds), or APP_HOLD_S.

        While the fork server warms (one thread, ~1 s) the other cores would idle: an app may
        take one of them (`early_slots`: cores - 1) and start before its sidecar; the next
        starts once it is ready. Twenty apps at once would starve the server instead."""
        sidecar = self.procs.get(self.sidecar_of_app.get(app.spec.name, ""))
        if sidecar is None:
            return
        deadline = time.monotonic() + APP_HOLD_S
        waiters = [asyncio.create_task(sidecar.spawned.wait()), asyncio.create_task(app.wake.wait())]
        try:
            while not (sidecar.spawned.is_set() or app.wake.is_set()):
                if self._early_slot_free():
                    self.early_apps.append(app.spec.name)
                    log.info("%s: started before its sidecar, while the fork server warms",
                             app.spec.name)
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                await asyncio.wait(waiters, timeout=min(EARLY_APP_CHECK_S, left),
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    def _early_slot_free(self) -> bool:
        if self.forks is None or self.forks.state.status != "starting":
            return False
        still_starting = [name for name in self.early_apps
                          if (m := self.procs.get(name)) is not None and m.status == "starting"]
        return len(still_starting) < self.early_slots

    def _restore_config_if_damaged(self, spec: ProcessSpec) -> None:
        """A sidecar whose config file is damaged would crash-loop: put the applied revision's
        config back from its compiled copy (hash-checked), and say so in both logs."""
        sidecar = self.sidecar_of.get(spec.name)
        if sidecar is None or "--config" not in spec.argv:
            return
        path = Path(spec.argv[spec.argv.index("--config") + 1])
        problem = _config_problem(path)
        if problem is None:
            return
        try:
            restored = restore_config(self.state, sidecar, path)
        except (OSError, StateFileError, ValueError) as exc:
            log.error("%s: %s is damaged (%s) and cannot be restored: %s", spec.name, path, problem, exc)
            return
        message = f"{path} was damaged ({problem}); restored from {restored}"
        log.warning("%s: %s", spec.name, message)
        with contextlib.suppress(OSError), open(self.state.log(spec.name), "a") as out:
            out.write(f"meshctl supervisor: {message}\n")

    async def _spawn(self, m: Managed) -> Child:
        spec = m.spec
        self.state.logs.mkdir(parents=True, exist_ok=True)
        forked = await self._fork(spec)
        if forked is not None:
            self.children.append(forked)
            return forked
        if m.stopping:
            raise _Stopping  # stopped while waiting for the fork server
        proc = await self._exec(spec)
        self.children.append(proc)
        return proc

    async def _fork(self, spec: ProcessSpec) -> ForkedProcess | None:
        """A sidecar forked from the fork server (started at the first one), or None."""
        if not self.can_fork or spec.role not in (SIDECAR, GATEWAY):
            return None
        if self.forks is None:
            if forkable(spec.argv, spec.argv[0]) is None:
                return None
            self._start_fork_server(spec.argv[0])
        assert self.forks is not None
        args = forkable(spec.argv, self.forks.python)
        if args is None:
            return None
        path = self.state.log(spec.name)
        with open(path, "ab") as out:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            out.write(f"--- {stamp} fork: {' '.join(spec.argv)}\n".encode())
        env = {**spec.env, OWNER_ENV: str(self.state.root), NAME_ENV: spec.name}
        return await self.forks.spawn(spec.name, args, spec.cwd, env, str(path))

    def _start_fork_server(self, python: str) -> None:
        env = server_env(dict(os.environ), str(self.state.root))
        self.forks = ForkServer(python, env, str(self.state.log(FORKSERVER)),
                                on_change=self.dirty.set, launched=self.launched)
        self.launched = None
        self.forks.start()

    async def _exec(self, spec: ProcessSpec) -> asyncio.subprocess.Process:
        with open(self.state.log(spec.name), "ab") as out:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            out.write(f"--- {stamp} start: {' '.join(spec.argv)}\n".encode())
            out.flush()
            return await asyncio.create_subprocess_exec(
                *spec.argv,
                cwd=spec.cwd,
                env={**os.environ, **spec.env, OWNER_ENV: str(self.state.root), NAME_ENV: spec.name},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one, apart from us
            )

    async def _probe_loop(self, m: Managed) -> None:
        while not m.stopping:
            proc = m.proc
            if proc is not None and proc.returncode is None and m.status != "backoff":
                ok = await self._probe(m.spec)
                new = "ready" if ok else ("starting" if m.status == "starting" else "unready")
                if new != m.status:
                    m.set_status(new)
                    self.dirty.set()
            await asyncio.sleep(0.1 if m.status == "starting" else 1.0)

    @staticmethod
    async def _probe(spec: ProcessSpec) -> bool:
        if spec.ready_url:
            return await probe_http(spec.ready_url, timeout=1.0)
        if spec.ready_port:
            return await probe_tcp("127.0.0.1", spec.ready_port, timeout=1.0)
        return True

    async def _stop(self, m: Managed) -> None:
        m.stopping = True
        m.wake.set()
        m.set_status("stopping")
        self.dirty.set()
        if m.probe_task:
            m.probe_task.cancel()
        proc = m.proc
        if proc is not None and proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_GRACE_S):
                    await proc.wait()
            except TimeoutError:
                log.warning("%s: no exit %.0fs after SIGTERM, killing", m.spec.name, STOP_GRACE_S)
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        if m.task:
            await asyncio.gather(m.task, return_exceptions=True)
        m.set_status("stopped")
        self.dirty.set()

    async def _stop_all(self) -> None:
        if self.forks is not None:
            self.forks.closing = True  # spawns waiting for it give up
        # Gateways first so no new traffic enters while the rest drains.
        gateways = [m for m in self.procs.values() if m.spec.role == GATEWAY]
        await asyncio.gather(*(self._stop(m) for m in gateways))
        rest = [m for m in self.procs.values() if m.spec.role != GATEWAY]
        await asyncio.gather(*(self._stop(m) for m in rest))

    # --- state.json and certificates --------------------------------------------------------

    async def _write_state_loop(self) -> None:
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            self._write_state()
            await asyncio.sleep(0.05)

    def _write_state(self, stopped: bool = False) -> None:
        write_observed(
            self.state,
            Observed(
                supervisor=SupervisorRecord(pid=None if stopped else os.getpid(), stopped=stopped),
                plan_digest=self.plan_digest,
                retiring=tuple(sorted(self.retiring)),
                updated=time.time(),
                processes={name: m.record() for name, m in sorted(self.procs.items())},
                forkserver=self._forkserver_record(),
            ),
        )

    def _forkserver_record(self) -> ForkServerRecord | None:
        if self.forks is None:
            return None
        f, proc = self.forks.state, self.forks.proc
        pid = proc.pid if proc is not None and proc.returncode is None else None
        return ForkServerRecord(pid=pid, status=f.status, restarts=f.restarts, forks=f.forks)

    async def _reap_strays_loop(self) -> None:
        while True:
            await asyncio.sleep(STRAY_CHECK_S)
            if self.can_fork:
                self._reap_strays()

    def _reap_strays(self) -> None:
        """As a subreaper we adopt every orphan below us (an app's leftover children, a fork
        server's middle process): reap the dead ones that are none of the children we await."""
        import psutil

        if self.forks is not None and self.forks.in_flight:
            return  # a forked sidecar may be ours already without being in `children` yet
        self.children = [c for c in self.children if c.returncode is None]
        ours = {c.pid for c in self.children}
        if self.forks is not None and self.forks.proc is not None:
            ours.add(self.forks.proc.pid)
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process().children():
                with contextlib.suppress(psutil.Error, ChildProcessError, OSError):
                    if child.pid not in ours and child.status() == psutil.STATUS_ZOMBIE:
                        os.waitpid(child.pid, os.WNOHANG)

    async def _rotate_loop(self) -> None:
        while True:
            await asyncio.sleep(LOG_CHECK_S)
            for name in list(self.procs):
                with contextlib.suppress(OSError):
                    rotate_log(self.state.log(name), LOG_MAX_BYTES)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(_renew_interval())
            try:
                await asyncio.to_thread(self._renew_certificates)
            except Exception:  # renewal must never take the supervisor down
                log.exception("certificate renewal failed")

    def _renew_certificates(self) -> None:
        from meshctl.identity import MeshCA, renew_if_due

        if not MeshCA.exists(self.state.ca_dir):
            return
        ca = MeshCA.load(self.state.ca_dir)
        for m in list(self.procs.values()):
            if not m.spec.tls_dir:
                continue
            identity = _identity_in(Path(m.spec.tls_dir).parent / "config.json")
            if identity and renew_if_due(ca, identity, Path(m.spec.tls_dir)):
                log.info("%s: certificate renewed", m.spec.name)


class _Stopping(Exception):
    """The process was stopped before it could be started."""


def _config_problem(path: Path) -> str | None:
    from meshctl.contract import ContractError, parse_sidecar_config

    try:
        parse_sidecar_config(path.read_bytes())
    except FileNotFoundError:
        return "missing"
    except (OSError, ContractError) as exc:
        return str(exc)
    return None


def restore_config(state: StateDir, sidecar: str, path: Path) -> Path:
    """Write the applied revision's compiled config of `sidecar` to `path`; the copy it came
    from. ValueError when the copy is not the one applied.json names (by hash)."""
    from meshctl.compiled import sidecar_file
    from meshctl.contract import config_hash
    from meshctl.fsio import write_atomic
    from meshctl.runtime.applied import read_applied

    applied = read_applied(state)
    if applied is None:
        raise ValueError(f"no applied revision in {state.applied}")
    copy = state.compiled(applied.revision) / sidecar_file(sidecar)
    data = copy.read_bytes()
    if applied.configs.get(sidecar) != config_hash(data):
        raise ValueError(f"{copy} is not the config applied.json names for {sidecar}")
    write_atomic(path, data)
    return copy


def _identity_in(config: Path) -> str | None:
    from meshctl.contract import ContractError, parse_sidecar_config

    try:
        return parse_sidecar_config(config.read_bytes()).identity
    except (OSError, ContractError):
        return None


def rotate_log(path: Path, max_bytes: int) -> bool:
    """Copy a log past `max_bytes` to `<name>.log.1` and truncate it in place ("copytruncate"):
    the process keeps its O_APPEND descriptor and goes on writing at the new end."""
    if path.stat().st_size <= max_bytes:
        return False
    shutil.copyfile(path, path.with_name(path.name + ".1"))
    os.truncate(path, 0)
    return True


def _renew_interval() -> float:
    try:
        return max(0.2, float(os.environ.get("MESHCTL_RENEW_INTERVAL", RENEW_EVERY_S)))
    except ValueError:
        return RENEW_EVERY_S


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def supervise(state: StateDir, warm: bool, launched: Launched | None = None) -> int:
    """Hold the directory's lock and run until stopped (`runtime.daemon` is the entry point).
    `launched`: a fork server the entry point started for us before our imports."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        with hold_lock(state):
            asyncio.run(Supervisor(state, warm=warm, launched=launched).run())
    except AlreadyRunning:
        log.error("another supervisor already runs on %s; exiting", state.root)
        return 2
    return 0
