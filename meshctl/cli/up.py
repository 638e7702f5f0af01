"""`meshctl up [DIR] [--detach]` and `meshctl down`: run the mesh on this machine, and stop it."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from meshctl.cli.common import PolicyDirArgument, PolicyDirOption, StateOption, err, out, policy_dir, report_diagnostics
from meshctl.cli.tables import render_table
from meshctl.errors import CheckFailed, UsageError
from meshctl.runtime.applied import read_history
from meshctl.runtime.control import (
    end_daemon,
    read_processes,
    reap_leftovers,
    start_daemon,
    stop_daemon,
    wait_ready,
)
from meshctl.runtime.ownership import mesh_running, supervised
from meshctl.runtime.plan import Plan
from meshctl.runtime.ports import PortBook
from meshctl.runtime.state import StateDir, resolve_state_dir


def parse_gateway_ports(values: list[str]) -> dict[str, int]:
    ports = {}
    for value in values:
        name, sep, port = value.partition("=")
        gateway, colon, listener = name.partition(":")
        named = bool(gateway) and (not colon or bool(listener))  # NAME, or NAME:LISTENER
        if not sep or not named or not port.isdigit() or int(port) > 65535:
            raise UsageError("--gateway-port wants NAME=PORT or NAME:LISTENER=PORT "
                             f"(0: any free port), got {value!r}")
        ports[name] = int(port)
    return ports


def plan_table(plan: Plan) -> str:
    lines = [f"revision {plan.revision}"]
    for name, found in sorted(plan.gateway_listener_urls().items()):
        for listener, _, url in found:
            lines.append(f"gateway {name:<12} {listener:<10} {url}")
    header = ("SERVICE", "VERSION", "INSTANCE", "APP", "INBOUND", "OUTBOUND", "ADMIN")
    rows = [
        (
            s.sidecar,
            s.version or "-",
            s.instance,
            str(s.app_port or "-"),
            str(s.inbound_port or "-"),
            str(s.outbound_port or "-"),
            str(s.admin_port),
        )
        for s in sorted(plan.sidecars, key=lambda s: (s.is_gateway, s.sidecar, s.instance))
    ]
    return "\n".join(lines) + "\n" + render_table(header, rows)


def up_command(
    directory: PolicyDirArgument = None,
    dir_option: PolicyDirOption = None,
    state: StateOption = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Return once everything is ready.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for every process to be ready.")
    ] = 60.0,
    gateway_port: Annotated[
        list[str] | None,
        typer.Option(
            "--gateway-port",
            help="Listen on another port than the Gateway's: NAME=PORT moves its first port, "
            "NAME:LISTENER=PORT that listener's (0: any free port).",
        ),
    ] = None,
    compiled: Annotated[Path | None, typer.Option(
        "--compiled", help="Run this `meshctl compile` output (built once, e.g. by CI) as it is.",
        show_default=False)] = None,
) -> None:
    """Start every app instance with its sidecar, and every gateway, on 127.0.0.1."""
    pdir = policy_dir(directory, dir_option)
    sdir = StateDir(resolve_state_dir(pdir, state))
    if mesh_running(sdir):
        raise UsageError(
            f"a mesh is already running from {sdir.root}: see `meshctl status`, "
            "apply changes with `meshctl apply`, or stop it with `meshctl down`"
        )
    # The state files `up` extends, checked before anything starts (not after).
    read_history(sdir)
    gateway_ports = parse_gateway_ports(gateway_port or [])
    PortBook(sdir.ports)
    replacing = frozenset(supervised(sdir))
    early = None
    if not replacing:
        # Nothing to hand over: the daemon starts now and warms its fork server while we
        # compile, then runs the plan.json we write (not one an earlier run left).
        sdir.plan.unlink(missing_ok=True)
        early = start_daemon(sdir, warm=True)
    # The compiler is imported only now (~0.2 s): the daemon, and its fork server, start first.
    from meshctl.runtime.launch import prepare, record_up

    try:
        prepared = prepare(pdir, sdir, gateway_ports=gateway_ports, replacing=replacing,
                           compiled_dir=compiled)
    except BaseException:
        if early is not None:
            end_daemon(early)
        raise
    report_diagnostics(prepared.warnings)
    left = reap_leftovers(sdir)
    if left:
        err(f"replacing {len(left)} process(es) left running by a supervisor that died: "
            + ", ".join(left))
    plan = prepared.plan
    names = {p.name for p in plan.processes}
    err(f"starting {len(names)} processes from {pdir} (state in {sdir.root})")
    pid = early if early is not None else start_daemon(sdir)
    _stop_on_sigterm()
    stopped = False
    try:
        wait_ready(sdir, names, timeout=timeout, progress=err, daemon_pid=pid)
        record_up(pdir, sdir, prepared)
        out(plan_table(plan))
        gateways = plan.gateway_urls()
        if gateways:
            url = next(iter(sorted(gateways.values())))
            err(f"ready: try `curl {url}/`; `meshctl status` shows traffic")
        if detach:
            stopped = True  # nothing to stop: the mesh is meant to outlive this command
            return
        err("running in the foreground; Ctrl-C stops everything")
        try:
            _follow(sdir)
        except KeyboardInterrupt:
            err("stopping ...")
            stop_daemon(sdir)
            stopped = True
            err("stopped")
    finally:
        if not stopped:
            # Whatever ended us (a failed start, Ctrl-C, a closed stdout): stop what we started.
            err("stopping what was started")
            stop_daemon(sdir)
            reap_leftovers(sdir)


def _stop_on_sigterm() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def _follow(sdir: StateDir) -> None:
    """Report restarts and health changes on stderr until the daemon goes away."""
    seen = {n: (v.status, v.restarts) for n, v in read_processes(sdir).items()}
    while sdir.daemon_pid() is not None:
        time.sleep(0.5)
        for name, view in read_processes(sdir).items():
            now = (view.status, view.restarts)
            if seen.get(name) != now:
                if view.restarts > seen.get(name, ("", 0))[1]:
                    err(f"{name}: exited with {view.last_exit}, restarting ({view.restarts})")
                else:
                    err(f"{name}: {view.status}")
                seen[name] = now
    raise CheckFailed(
        f"the supervisor stopped (killed, or `meshctl down` elsewhere); see {sdir.log('supervisor')}"
    )


def down_command(
    directory: PolicyDirArgument = None,
    dir_option: PolicyDirOption = None,
    state: StateOption = None,
) -> None:
    """Stop everything `meshctl up` started (and nothing else)."""
    pdir = policy_dir(directory, dir_option)
    sdir = StateDir(resolve_state_dir(pdir, state))
    if not sdir.root.is_dir():
        raise UsageError(f"no state directory at {sdir.root}: nothing was started from {pdir}")
    stopped = stop_daemon(sdir)
    leftovers = reap_leftovers(sdir)
    if leftovers:
        err(f"killed {len(leftovers)} process(es) left by a supervisor that died: "
            + ", ".join(leftovers))
    out("stopped\n" if stopped or leftovers else "nothing was running\n")


def register(app: typer.Typer) -> None:
    app.command("up")(up_command)
    app.command("down")(down_command)



