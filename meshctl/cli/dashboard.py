"""`meshctl dashboard`: the running mesh in a browser (graph, A/B view, rollouts, explain)."""

from __future__ import annotations

import ipaddress
import socket
import sys
import webbrowser
from typing import Annotated

import typer

from meshctl.cli.common import PolicyDirOption, StateOption, err, policy_dir
from meshctl.errors import UsageError
from meshctl.runtime.control import load_plan
from meshctl.runtime.state import StateDir, resolve_state_dir


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _bind(address: str, port: int) -> socket.socket:
    """The listening socket, opened before the server starts so a busy port is a clear error
    and --port 0 can print the port it got."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {address}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    return sock


def dashboard_command(
    dir_option: PolicyDirOption = None,
    state: StateOption = None,
    port: Annotated[int, typer.Option(help="Port to serve on (0: any free port).")] = 9901,
    listen: Annotated[
        str, typer.Option(help="Address to serve on. Anything but loopback exposes the mesh's "
                          "traffic and policy to that network.")
    ] = "127.0.0.1",
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in a browser.")] = False,
    prometheus: Annotated[
        str | None, typer.Option(help="Read traffic from this Prometheus (http://host:9090) "
                                 "instead of the sidecars' admin endpoints.")
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between samples.")] = 2.0,
    window: Annotated[float, typer.Option(help="Seconds of traffic behind the live numbers.")] = 10.0,
) -> None:
    """Serve a live view of the running mesh: service graph, versions, rollouts, explain."""
    from aiohttp import web

    from meshctl.dashboard.server import Dashboard, Settings

    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0..65535, got {port}")
    if interval <= 0 or window < interval:
        raise UsageError("--interval must be > 0 and --window at least one interval")
    if prometheus is not None and not prometheus.startswith(("http://", "https://")):
        raise UsageError(f"--prometheus must be an http(s) URL, got {prometheus!r}")
    sdir = StateDir(resolve_state_dir(policy_dir(None, dir_option), state))
    load_plan(sdir)  # a clear error when nothing was ever started here
    loopback = _is_loopback(listen)
    if not loopback:
        err(f"warning: serving on {listen}: anyone who can reach it sees the mesh's traffic and "
            "policy, and no login protects it")
    sock = _bind(listen, port)
    host, bound = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else shown}:{bound}/"
    settings = Settings(state=sdir, interval=interval, window=window, prometheus=prometheus,
                        loopback_only=loopback)
    if sdir.daemon_pid() is None:
        err(f"warning: the mesh from {sdir.root} is not running; the page shows it once it is")
    print(f"meshctl dashboard: serving {url}", flush=True)
    if open_browser:
        webbrowser.open(url)
    try:
        web.run_app(Dashboard(settings).app(), sock=sock, print=None, access_log=None,
                    handle_signals=True)
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard_command)
