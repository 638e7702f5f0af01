"""`meshctl promote SERVICE VERSION`: move traffic to a version step by step, each step a commit,
applied through the gated rollout and judged against the version it replaces."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from meshctl.cli.apply import roll_out
from meshctl.cli.common import PolicyDirOption, StateOption, err, out, policy_dir
from meshctl.cli.escape import terminal_safe
from meshctl.errors import UsageError
from meshctl.model.values import parse_duration_ms
from meshctl.promote import run
from meshctl.promote.analysis import Criteria, VersionSample
from meshctl.promote.observe import PrometheusWindow, SidecarWindow
from meshctl.runtime.control import load_plan
from meshctl.runtime.state import StateDir, resolve_state_dir


class TerminalReporter:
    """Messages as lines on stderr; on a terminal, a live table of both versions' numbers."""

    def __init__(self) -> None:
        self.console = Console(stderr=True, highlight=False)
        self._live: Live | None = None

    def message(self, text: str) -> None:
        self._stop_live()
        self.console.print(terminal_safe(text), markup=False)

    def live(self, step: str, elapsed: float, total: float,
             samples: dict[str, VersionSample]) -> None:
        if not self.console.is_terminal:
            return
        table = Table(title=f"{step}: {elapsed:.0f}s of {total:.0f}s", title_justify="left")
        for column in ("version", "requests", "success", "p50", "p99"):
            table.add_column(column, justify="left" if column == "version" else "right")
        for sample in samples.values():
            rate = sample.success_rate
            p50, p99 = sample.percentile(0.5), sample.percentile(0.99)
            table.add_row(
                sample.version, str(sample.requests), "-" if rate is None else f"{rate:.2f}%",
                "-" if p50 is None else f"{p50:.1f} ms", "-" if p99 is None else f"{p99:.1f} ms",
            )
        if self._live is None:
            self._live = Live(table, console=self.console, refresh_per_second=4, transient=True)
            self._live.start()
        else:
            self._live.update(table)

    def _stop_live(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def _steps(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--steps must be comma-separated percentages, got {text!r}") from None


def _seconds(text: str, option: str) -> float:
    try:
        return parse_duration_ms(text) / 1000
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def promote_command(
    service: Annotated[str | None, typer.Argument(help="The service whose traffic moves.")] = None,
    version: Annotated[str | None, typer.Argument(help="The version that takes it over.")] = None,
    steps: Annotated[str, typer.Option(help="Traffic shares of the new version, in percent.")
                     ] = "5,25,50,100",
    interval: Annotated[str, typer.Option(help="Analysis window per step, e.g. 1m.")] = "1m",
    source: Annotated[str | None, typer.Option(
        "--from", help="Version that gives up the traffic (default: the rule's largest other).")
    ] = None,
    rule: Annotated[str | None, typer.Option(
        help="Route rule whose weights change (default: the rule named default, else the last).")
    ] = None,
    min_success_rate: Annotated[float | None, typer.Option(
        help="Fail a step when the new version's success rate (percent) is below this.")
    ] = 99.0,
    max_p99: Annotated[str | None, typer.Option(
        help="Fail a step when the new version's p99 is over this, e.g. 500ms.")] = None,
    min_requests: Annotated[int, typer.Option(
        help="Requests each version must serve in a window for a verdict.")] = 50,
    on_inconclusive: Annotated[run.OnInconclusive, typer.Option(
        help="Too little traffic: wait up to 3 more intervals, or fail at once.")] = "wait",
    prometheus: Annotated[str | None, typer.Option(
        help="Read the numbers from this Prometheus (default: the sidecars themselves).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Go on with an interrupted promotion.")
                      ] = False,
    abort: Annotated[bool, typer.Option("--abort", help="Undo an interrupted promotion.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the steps only.")] = False,
    dir_option: PolicyDirOption = None,
    state: StateOption = None,
) -> None:
    """Move SERVICE's traffic to VERSION step by step: a commit per step, a gated apply, and an
    analysis against the current version; a failing step is rolled back by a commit."""
    pdir = policy_dir(None, dir_option)
    sdir = StateDir(resolve_state_dir(pdir, state))
    if resume and abort:
        raise UsageError("--resume and --abort exclude each other")
    criteria = Criteria(
        min_requests=min_requests, min_success_rate=min_success_rate,
        max_p99_ms=_seconds(max_p99, "--max-p99") * 1000 if max_p99 else None,
    )
    reporter = TerminalReporter()

    def apply(commit: str, action: str) -> None:
        roll_out(pdir, sdir, commit, allow_dirty=False, dry_run=False, window=None, canary=None,
                 action=action, quiet=True)

    def window(versions: list[str]) -> run.Window:
        if prometheus:
            return PrometheusWindow(prometheus, journal_service, versions)
        return SidecarWindow(load_plan(sdir).sidecars, versions)

    deploy = run.Deployment(apply=apply, window=window, reporter=reporter)
    if abort:
        run.abort(pdir, sdir.root, deploy)
        out("promotion aborted: the last good weights are applied\n")
        return
    journal_service = service or ""
    if resume:
        from meshctl.rollout import promotion as journals

        existing = journals.read(sdir.root)
        journal_service = existing.service if existing else journal_service
        req = run.Request(journal_service, "", None, [], 0, criteria=criteria,
                          on_inconclusive=on_inconclusive)
        final = run.resume(pdir, sdir.root, req, deploy)
    else:
        if service is None or version is None:
            raise UsageError("promote needs SERVICE and VERSION (or --resume / --abort)")
        req = run.Request(
            service, version, source, _steps(steps), _seconds(interval, "--interval"), rule,
            criteria, on_inconclusive,
        )
        journal, planned = run.plan(pdir, req)
        if dry_run:
            out(run.describe(journal, planned))
            return
        err(run.describe(journal, planned).rstrip())
        if sdir.daemon_pid() is None:
            raise UsageError(f"the mesh from {sdir.root} is not running (`meshctl up` starts it)")
        final = run.start(pdir, sdir.root, req, deploy)
    out(f"{final.service} {final.target} promoted in {len(final.commits)} commits: "
        f"{', '.join(c[:12] for c in final.commits)}\n")


def register(app: typer.Typer) -> None:
    app.command("promote")(promote_command)

