"""`meshctl apply [REV]`, `meshctl rollback [REV]`, `meshctl history`: roll policy out to the
running local mesh in gated waves, and see what was applied when."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from meshctl.cli.common import PolicyDirOption, StateOption, TextOrJson, err, out, policy_dir, report_diagnostics
from meshctl.cli.tables import render_table
from meshctl.errors import UsageError
from meshctl.model.values import parse_duration_ms
from meshctl.revisions import commit_subjects
from meshctl.rollout.apply import apply_lock, execute
from meshctl.rollout.gate import GateSpec
from meshctl.rollout.planning import describe, gate_of, plan_rollout
from meshctl.rollout.source import compile_target, compiled_target
from meshctl.runtime.applied import read_applied, read_history, record_applied
from meshctl.runtime.control import load_plan, require_running, views_of
from meshctl.runtime.observed import read_observed
from meshctl.runtime.ports import PortBook
from meshctl.runtime.state import StateDir, resolve_state_dir

RevArgument = Annotated[str | None, typer.Argument(help="Git revision (default HEAD).")]
WindowOption = Annotated[
    str | None, typer.Option(help="Gate window, e.g. 10s (default: Mesh.spec.rollout.gate).")
]
CanaryOption = Annotated[
    str | None, typer.Option(help="Sidecars in the first wave: a count or N% (default 1).")
]


def _state(dir_option: Path | None, state: Path | None) -> tuple[Path, StateDir]:
    pdir = policy_dir(None, dir_option)
    return pdir, StateDir(resolve_state_dir(pdir, state))


def _canary(value: str | None) -> int | str | None:
    if value is None:
        return None
    if value.endswith("%") and value[:-1].isdigit() and 0 < int(value[:-1]) <= 100:
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise UsageError(f"--canary must be a count (1) or a share (10%), got {value!r}")


def _gate(default: GateSpec, window: str | None) -> GateSpec:
    if window is None:
        return default
    try:
        ms = parse_duration_ms(window)
    except ValueError as exc:
        raise UsageError(f"--window: {exc}") from None
    return GateSpec(window_ms=ms, max_error_rate=default.max_error_rate, max_p99_ms=default.max_p99_ms)


def roll_out(
    pdir: Path,
    sdir: StateDir,
    rev: str | None,
    *,
    allow_dirty: bool,
    dry_run: bool,
    window: str | None,
    canary: str | None,
    action: str,
    fmt: str = "text",
    quiet: bool = False,
    compiled_dir: Path | None = None,
) -> None:
    """Roll `rev` out; the one-line result goes to stdout (to stderr when `quiet`: a caller such
    as `promote` reports for itself)."""
    result = (lambda text: err(text.rstrip("\n"))) if quiet else out
    old = load_plan(sdir)
    require_running(sdir)
    # Every state file this apply reads or extends, checked before any work is done.
    applied = read_applied(sdir)
    read_history(sdir)
    read_observed(sdir, required=True)
    PortBook(sdir.ports, required=True)
    if compiled_dir is not None:
        target = compiled_target(pdir, compiled_dir)
    else:
        target = compile_target(pdir, rev, allow_dirty=allow_dirty)
    report_diagnostics(target.warnings)
    with apply_lock(sdir):
        running = frozenset(n for n, v in views_of(read_observed(sdir, required=True)).items() if v.pid)
        default_gate, _ = gate_of(target.compiled)
        plan = plan_rollout(
            sdir, old, target.compiled,
            base=applied.revision if applied else None, commit=target.commit,
            running=running, canary=_canary(canary), gate=_gate(default_gate, window),
        )
        if dry_run:
            out(json.dumps(plan.to_json(), indent=2) + "\n" if fmt == "json" else describe(plan))
            return
        err(describe(plan).rstrip())
        started = time.monotonic()
        if plan.empty:
            # Same configs under a new name: record it, nothing to reload.
            compiled = target.compiled
            record_applied(sdir, compiled.revision, compiled.manifest.source_digest, compiled.rendered,
                           [s.instance for s in old.sidecars], action=action, note="no config changes")
            if target.repo is not None and target.commit:
                target.repo.update_ref(target.commit, f"meshctl {action} {target.commit}")
            result(f"{action}: {plan.target} recorded (no sidecar config changed)\n")
            return
        outcome = execute(sdir, plan, progress=err, repo=target.repo, action=action)
        confirmed = sum(outcome.seconds_to_confirm)
        result(
            f"{action}: {plan.target} is running on {len(plan.changed)} updated sidecar(s) "
            f"({len(plan.added)} started, {len(plan.restarted)} restarted, {len(plan.removed)} stopped) in "
            f"{time.monotonic() - started:.1f}s; confirmation took {confirmed:.2f}s\n"
        )


def apply_command(
    rev: RevArgument = None,
    dir_option: PolicyDirOption = None,
    state: StateOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
    allow_dirty: Annotated[
        bool, typer.Option("--allow-dirty", help="Apply uncommitted changes in the work tree.")
    ] = False,
    window: WindowOption = None,
    canary: CanaryOption = None,
    format: Annotated[TextOrJson, typer.Option("--format", help="Output format of the --dry-run plan.")] = "text",
    compiled: Annotated[Path | None, typer.Option(
        "--compiled", help="Apply this `meshctl compile` output (built once, e.g. by CI) as it is.",
        show_default=False)] = None,
) -> None:
    """Validate, compile, and roll a revision out to the changed sidecars in gated waves."""
    if compiled is not None and (rev is not None or allow_dirty):
        raise UsageError("--compiled applies a compiled directory: give no REV and no --allow-dirty")
    pdir, sdir = _state(dir_option, state)
    roll_out(pdir, sdir, rev, allow_dirty=allow_dirty, dry_run=dry_run, window=window,
             canary=canary, action="apply", fmt=format, compiled_dir=compiled)


def previous_revision(sdir: StateDir) -> str:
    if not sdir.history.exists():
        raise UsageError(f"{sdir.history} is missing, so there is no earlier revision to go back "
                         "to: name one, `meshctl rollback REV`")
    applied = read_applied(sdir)
    current = applied.revision if applied else None
    for entry in reversed(read_history(sdir)):
        if entry.action in ("up", "apply", "rollback") and entry.revision != current:
            return entry.revision
    raise UsageError("no earlier revision in the history to roll back to")


def rollback_command(
    rev: Annotated[
        str | None, typer.Argument(help="Revision to go back to (default: the previous one).")
    ] = None,
    dir_option: PolicyDirOption = None,
    state: StateOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
    window: WindowOption = None,
    canary: CanaryOption = None,
) -> None:
    """Apply the previously applied revision (or REV) again, through the same gated waves."""
    pdir, sdir = _state(dir_option, state)
    target = rev or previous_revision(sdir)
    if target.endswith("-dirty"):
        raise UsageError(f"{target} was an uncommitted work tree; it cannot be rebuilt from git")
    err(f"rolling back to {target}")
    roll_out(pdir, sdir, target, allow_dirty=True, dry_run=dry_run, window=window,
             canary=canary, action="rollback")


def history_command(
    dir_option: PolicyDirOption = None,
    state: StateOption = None,
    format: Annotated[TextOrJson, typer.Option("--format", help="Output format.")] = "text",
) -> None:
    """List the revisions applied to the local mesh, newest first."""
    pdir, sdir = _state(dir_option, state)
    entries: list[dict[str, Any]] = [asdict(e) for e in reversed(read_history(sdir))]
    applied = read_applied(sdir)
    current = applied.revision if applied else None
    subjects = commit_subjects(pdir, [str(e["revision"]) for e in entries])
    for entry in entries:
        entry["subject"] = subjects.get(str(entry["revision"]))
    if format == "json":
        out(json.dumps({"current": current, "entries": entries}, indent=2) + "\n")
        return
    if not entries:
        out("nothing applied yet\n")
        return
    running = _first_ok(entries)
    rows = [
        (
            "*" if entry["revision"] == current and entry is running else "",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry["at"])),
            entry["action"],
            str(entry["revision"])[:12],
            entry.get("subject") or "",
            entry.get("note") or "",
        )
        for entry in entries
    ]
    out(render_table(("", "AT", "ACTION", "REVISION", "SUBJECT", "NOTE"), rows))


def _first_ok(entries: list[dict[str, object]]) -> dict[str, object] | None:
    return next((e for e in entries if not str(e["action"]).endswith("-failed")), None)


def register(app: typer.Typer) -> None:
    app.command("apply")(apply_command)
    app.command("rollback")(rollback_command)
    app.command("history")(history_command)
