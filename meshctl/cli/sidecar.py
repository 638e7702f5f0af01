"""`meshctl sidecar --config FILE --bindings FILE`: run one sidecar in this process.

The files are checked here (exit 2 with a clear message for a bad one); then the process
re-executes itself as `python -OO -m proxy_addon`, keeping its pid (so a supervisor's SIGTERM
reaches the proxy), dropping mitmproxy's asserts from the hot path and docstrings from memory
(the proxy entry point uses argparse, which needs no docstrings; typer's help does).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from meshctl.contract import ContractError
from meshctl.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("sidecar")(sidecar)


def sidecar(
    config: Path = typer.Option(..., "--config", help="Compiled sidecar config (JSON)."),
    bindings: Path = typer.Option(
        ..., "--bindings", help="Runtime bindings: listener ports, endpoints, app address."
    ),
    confdir: Path | None = typer.Option(
        None, "--confdir", help="mitmproxy state directory (default: a private temp dir)."
    ),
    optimize: bool = typer.Option(
        True, "--optimize/--no-optimize", help="Run the proxy under python -OO (faster, smaller)."
    ),
) -> None:
    """Run one sidecar: outbound proxy, inbound reverse proxy, admin, hot reload."""
    from proxy_addon.reload import load_pair

    try:
        load_pair(config, bindings)
    except ContractError as exc:
        raise UsageError(str(exc)) from None
    argv = [sys.executable]
    if optimize:
        argv.append("-OO")
    argv += ["-m", "proxy_addon", "--config", str(config), "--bindings", str(bindings)]
    if confdir is not None:
        argv += ["--confdir", str(confdir)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
