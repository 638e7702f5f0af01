"""Carrying out a rollout plan on the local runtime, and undoing it when it fails.

Order: start new instances (and wait until ready) -> update changed sidecars wave by wave,
each wave confirmed (every sidecar reports the new revision) and gated (error rate, p99) ->
stop removed instances -> record the revision. A failure puts every updated sidecar back on
the config it had, stops what this apply started, and raises CheckFailed (exit 1).
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from meshctl.compiled import write_compiled_dir
from meshctl.errors import CheckFailed, UsageError
from meshctl.fsio import write_atomic
from meshctl.rollout.confirm import wait_for_revision
from meshctl.rollout.gate import GateResult, watch
from meshctl.rollout.planning import RolloutPlan
from meshctl.rollout.progress import ProgressFile, wave_label
from meshctl.runtime.applied import append_history, record_applied
from meshctl.runtime.control import publish_plan, wait_ready, wait_settled
from meshctl.runtime.launch import check_ports_free, tls_of, write_sidecar_files
from meshctl.runtime.plan import Plan, ProcessSpec
from meshctl.runtime.sidecar_files import write_bindings
from meshctl.runtime.state import StateDir
from meshctl.sources.git import PolicyRepo

Progress = Callable[[str], None]
CONFIRM_TIMEOUT_S = 15.0
START_TIMEOUT_S = 60.0


@dataclass
class ApplyOutcome:
    ok: bool
    revision: str
    seconds_to_confirm: list[float] = field(default_factory=list)  # per wave
    gates: list[GateResult] = field(default_factory=list)


@contextmanager
def apply_lock(state: StateDir) -> Iterator[None]:
    """One apply at a time per state directory."""
    state.root.mkdir(parents=True, exist_ok=True)
    with open(state.root / "apply.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError("another apply or rollback is running on this mesh") from None
        yield


def _merged(old: Plan, new: Plan, keep: list[str]) -> Plan:
    """The new plan plus the instances still to stop: they serve until callers moved away."""
    keep_set = set(keep)
    extra_sidecars = [s for s in old.sidecars if s.instance in keep_set]
    extra_names = {s.process for s in extra_sidecars} | {
        s.app_process for s in extra_sidecars if s.app_process
    }
    return Plan(
        policy_dir=new.policy_dir,
        revision=new.revision,
        topology=new.topology,
        sidecars=new.sidecars + extra_sidecars,
        processes=new.processes + [p for p in old.processes if p.name in extra_names],
    )


def execute(
    state: StateDir,
    plan: RolloutPlan,
    *,
    progress: Progress,
    repo: PolicyRepo | None = None,
    confirm_timeout: float = CONFIRM_TIMEOUT_S,
    action: str = "apply",
) -> ApplyOutcome:
    tracker = ProgressFile(state, plan, action)  # for watchers (meshctl dashboard)

    def report(text: str) -> None:
        progress(text)
        tracker.message(text)

    run = _Run(state, plan, report, confirm_timeout, tracker)
    try:
        run.start_new_processes()
        for i, wave in enumerate(plan.waves):
            run.update_wave(wave_label(i, len(plan.waves)), wave)
        run.stop_removed()
    except (_Failed, CheckFailed) as exc:
        report(f"rolling back: {exc}")
        _undo(state, plan, run.previous, report)
        append_history(state, plan.target, action=f"{action}-failed", note=str(exc).split("\n")[0])
        tracker.finish("rolled back", str(exc).split("\n")[0])
        raise CheckFailed(f"{action} of {plan.target} failed and was rolled back: {exc}") from None
    except BaseException:
        report("interrupted: rolling back")
        _undo(state, plan, run.previous, report)
        tracker.finish("interrupted")
        raise
    write_compiled_dir(plan.compiled, state.compiled(plan.target))
    record_applied(state, plan.target, plan.compiled.manifest.source_digest, run.rendered,
                   [s.instance for s in plan.new.sidecars], action=action)
    if repo is not None and plan.commit and plan.commit == plan.target:
        # The applied revision, in git, with its reflog as history (`meshctl diff` reads it).
        repo.update_ref(plan.target, f"meshctl {action} {plan.target}")
    run.outcome.ok = True
    tracker.finish("succeeded")
    return run.outcome


class _Run:
    """One apply in progress: what it changed so far, so that it can be undone."""

    def __init__(
        self, state: StateDir, plan: RolloutPlan, progress: Progress, confirm_timeout: float,
        tracker: ProgressFile,
    ) -> None:
        self.tracker = tracker
        self.state = state
        self.plan = plan
        self.progress = progress
        self.confirm_timeout = confirm_timeout
        self.outcome = ApplyOutcome(ok=False, revision=plan.target)
        self.previous: dict[str, str] = {}  # instance -> the config text it ran before
        self.records = {s.instance: s for s in plan.new.sidecars}
        self.rendered = plan.compiled.rendered  # each sidecar's JSON, exactly as compiled

    def start_new_processes(self) -> None:
        """New instances first, ready before any caller learns of them; then restarts."""
        state, plan = self.state, self.plan
        # Processes to restart keep their old command until their turn comes.
        old_specs = {p.name: p for p in plan.old.processes}
        interim = _with_specs(
            _merged(plan.old, plan.new, plan.removed),
            [old_specs[n] for n in plan.restarted],
        )
        if plan.added:
            check_ports_free(interim, skip=[s.instance for s in plan.old.sidecars])
            write_sidecar_files(state, interim, plan.compiled, plan.added, all_bindings=False)
            publish_plan(state, interim)
            added = set(plan.added)
            starting = {p.name for p in interim.processes if p.name.split(".")[0] in added}
            self.progress(f"starting {len(starting)} new processes")
            wait_ready(state, starting, timeout=START_TIMEOUT_S)
            write_bindings(state, interim, tls_of(state, interim))
        if plan.restarted:
            self.restart_one_by_one(interim)

    def restart_one_by_one(self, current: Plan) -> None:
        """Instances whose command or environment changed, one at a time: callers stop sending
        to the instance (when its version has another), it restarts, it takes traffic again."""
        state, plan = self.state, self.plan
        new_specs = {p.name: p for p in plan.new.processes}
        by_instance: dict[str, list[str]] = {}
        for name in plan.restarted:
            by_instance.setdefault(name.split(".")[0], []).append(name)
        tls = tls_of(state, current)
        for instance, names in sorted(by_instance.items()):
            record = next((s for s in current.sidecars if s.instance == instance), None)
            siblings = [
                s for s in current.sidecars
                if record and s.instance != instance
                and (s.service, s.version) == (record.service, record.version)
            ]
            if siblings and write_bindings(state, current, tls, draining={instance}):
                time.sleep(1.0)  # sidecars reload bindings within a second
            self.progress(f"restarting {instance} (new command or environment)")
            current = _with_specs(current, [new_specs[n] for n in names])
            publish_plan(state, current)
            wait_ready(state, set(names), timeout=START_TIMEOUT_S)
            write_bindings(state, current, tls)
        self.gate("restarted", sorted(by_instance))

    def gate(self, label: str, instances: list[str]) -> None:
        """Watch these instances' sidecars over the gate window; a failure undoes the apply.

        A new command or environment changes behaviour as much as a new config does, so
        restarted instances are judged by the same gate (and restarted with their old command
        and environment by the undo when they fail it)."""
        plan = self.plan
        if plan.gate.window_ms == 0:
            self.progress(f"{label}: no gate (window 0)")
            self.tracker.wave(label, "passed")
            return
        records = [self.records[n] for n in instances if n in self.records]
        result = watch(plan.gate, records, progress=self.progress,
                       on_tick=lambda t: self.tracker.gate_tick(label, t))
        self.outcome.gates.append(result)
        self.tracker.gate_tick(label, result.traffic, result.reason or "passed")
        self.tracker.wave(label, "passed" if result.ok else "failed")
        if not result.ok:
            raise _Failed(f"{label} failed the gate: {result.summary()}")
        self.progress(f"{label}: gate passed ({result.summary()})")

    def update_wave(self, label: str, wave: list[str]) -> None:
        """New configs for one wave, confirmed by every sidecar in it, then the gate."""
        plan = self.plan
        self.progress(f"{label}: updating {len(wave)} sidecar(s): {', '.join(wave)}")
        self.tracker.wave(label, "updating")
        started = time.monotonic()
        for instance in wave:
            path = self.state.sidecar_config(instance)
            self.previous[instance] = path.read_text(encoding="utf-8")
            write_atomic(path, self.rendered[self.records[instance].sidecar])
        records = [self.records[n] for n in wave]
        missing = wait_for_revision(records, plan.target, self.confirm_timeout)
        if missing:
            shown = ", ".join(f"{n} (runs {rev or 'unknown'})" for n, rev in missing.items())
            raise _Failed(
                f"not confirmed on {plan.target} after {self.confirm_timeout:g}s: {shown}"
            )
        took = time.monotonic() - started
        self.outcome.seconds_to_confirm.append(took)
        self.tracker.wave(label, "gating", confirm_s=round(took, 2))
        self.progress(
            f"{label}: {len(wave)} sidecar(s) confirmed on the new revision in {took:.2f}s"
        )
        self.gate(label, list(self.previous))

    def stop_removed(self) -> None:
        """Callers first forget the endpoints of removed instances, then those stop."""
        state, plan = self.state, self.plan
        if plan.removed:
            write_bindings(state, plan.new, tls_of(state, plan.new))
            time.sleep(1.0)  # sidecars reload bindings within a second
            self.progress(f"stopping {len(plan.removed)} instance(s): {', '.join(plan.removed)}")
        publish_plan(state, plan.new)
        write_bindings(state, plan.new, tls_of(state, plan.new))
        if not wait_settled(state):
            self.progress("warning: the supervisor has not stopped every removed process yet")


def _with_specs(plan: Plan, specs: list[ProcessSpec]) -> Plan:
    """`plan` with these processes' specs swapped in (by name)."""
    swap = {p.name: p for p in specs}
    return replace(plan, processes=[swap.get(p.name, p) for p in plan.processes])


class _Failed(Exception):
    pass


def _undo(state: StateDir, plan: RolloutPlan, previous: dict[str, str], progress: Progress) -> None:
    """Updated sidecars back to their old configs; the old plan (stops what we started)."""
    for instance, text in previous.items():
        write_atomic(state.sidecar_config(instance), text)
    old_records = {s.instance: s for s in plan.old.sidecars}
    by_revision: dict[str, list[str]] = {}
    for instance, text in previous.items():
        rev = _revision_in(text)
        if rev and instance in old_records:
            by_revision.setdefault(rev, []).append(instance)
    for rev, names in by_revision.items():
        missing = wait_for_revision([old_records[n] for n in names], rev, CONFIRM_TIMEOUT_S)
        if missing:
            progress(f"warning: not back on {rev}: {', '.join(missing)}")
    # Callers forget the endpoints of instances this apply started before those stop.
    if write_bindings(state, plan.old, tls_of(state, plan.old)) and plan.added:
        time.sleep(1.0)
    publish_plan(state, plan.old)
    if not wait_settled(state):
        progress("warning: the supervisor has not stopped every started process yet")
    if previous:
        progress(f"{len(previous)} sidecar(s) back on their previous config")


def _revision_in(text: str) -> str | None:
    import json

    try:
        rev = json.loads(text).get("revision")
    except (ValueError, AttributeError):
        return None
    return rev if isinstance(rev, str) else None
