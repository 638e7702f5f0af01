"""`meshctl prometheus-config`: a Prometheus configuration that finds the local mesh by itself."""

from __future__ import annotations

from typing import Annotated

import typer

from meshctl.cli.common import PolicyDirArgument, PolicyDirOption, StateOption, out, policy_dir
from meshctl.errors import UsageError


def prometheus_config(
    directory: PolicyDirArgument = None,
    dir_option: PolicyDirOption = None,
    state: StateOption = None,
    interval: Annotated[float, typer.Option(
        "--scrape-interval", help="Seconds between scrapes (and target file reads).")] = 15.0,
) -> None:
    """Print a scrape config using <state>/prometheus/targets.json (kept current by `up`)."""
    from meshctl.runtime.file_sd import scrape_config
    from meshctl.runtime.state import StateDir, resolve_state_dir

    if not 0.1 <= interval <= 3600:
        raise UsageError("--scrape-interval must be between 0.1 and 3600 seconds")
    root = resolve_state_dir(policy_dir(directory, dir_option), state)
    out(scrape_config(StateDir(root), interval))


def register(app: typer.Typer) -> None:
    app.command("prometheus-config")(prometheus_config)
