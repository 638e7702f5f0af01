"""A promotion: traffic moved to a new version step by step, each step a commit, applied, judged.

For each step: edit the rule's weights, commit them (the message names the step and the
analysis that let the previous one pass), apply the commit through the gated rollout, then
watch both versions for one interval and compare them (`analysis`). A step that fails (or whose
apply fails) is undone by another commit restoring the last good weights, applied in turn.
After the last step a final commit drops the retired version from the rule. Git owns the
weights throughout: nothing but these commits changes them, and `git log` tells the story.

The journal (`journal.py`) is written before every change, so an interrupted promotion goes
on (`resume`) or is undone (`abort`) from where it stood.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from meshctl.errors import CheckFailed, UsageError
from meshctl.promote.analysis import Criteria, Verdict, VersionSample, analyze
from meshctl.promote.weights import read_weights, step_weights, write_weights
from meshctl.rollout import promotion as journals
from meshctl.rollout.promotion import Journal
from meshctl.sources.git import PolicyRepo, run_git

OnInconclusive = Literal["wait", "fail"]


class Window(Protocol):
    def open(self) -> None: ...
    def close(self) -> dict[str, VersionSample]: ...


class Reporter(Protocol):
    def message(self, text: str) -> None: ...
    def live(self, step: str, elapsed: float, total: float,
             samples: dict[str, VersionSample]) -> None: ...


@dataclass(frozen=True)
class Request:
    service: str
    target: str
    source: str | None
    steps: list[int]
    interval_s: float
    rule: str | None = None
    criteria: Criteria = field(default_factory=Criteria)
    on_inconclusive: OnInconclusive = "wait"
    max_waits: int = 3  # extra intervals waited for traffic before giving up


@dataclass(frozen=True)
class Deployment:
    """What promotion needs from the runtime: a gated apply, and windows on the traffic."""

    apply: Callable[[str, str], None]  # (commit, action); raises CheckFailed when gated out
    window: Callable[[list[str]], Window]  # versions -> a window on their traffic
    reporter: Reporter


@dataclass(frozen=True)
class PlannedStep:
    label: str
    weights: dict[str, int]


def plan(policy_dir: Path, req: Request) -> tuple[Journal, list[PlannedStep]]:
    """The journal a new promotion starts with, and the weights of every commit it will make."""
    _check_steps(req.steps)
    current = read_weights(policy_dir, req.service, req.rule)
    weights = dict(current.weights)
    source = req.source or _default_source(weights, req.target)
    if source == req.target:
        raise UsageError(f"--from {source} is the version being promoted")
    if current.created:  # no Route yet: the service was spread over its versions; start at 0
        weights = {source: 100}
    weights.setdefault(req.target, 0)
    if source not in weights:
        raise UsageError(
            f"{source} is not a backend of rule {current.rule!r} of {req.service} "
            f"(backends: {', '.join(sorted(weights))})"
        )
    journal = Journal(
        service=req.service, target=req.target, source=source, rule=current.rule,
        steps=list(req.steps), interval_ms=int(req.interval_s * 1000), last_good=weights,
    )
    steps = [
        PlannedStep(_step_label(journal, i), step_weights(weights, req.target, source, pct))
        for i, pct in enumerate(req.steps)
    ]
    if req.steps[-1] == 100:
        final = {v: w for v, w in steps[-1].weights.items() if v != source}
        steps.append(PlannedStep(f"final (retire {source})", final))
    return journal, steps


def describe(journal: Journal, steps: list[PlannedStep]) -> str:
    lines = [
        f"promote {journal.service} {journal.target} from {journal.source} "
        f"(rule {journal.rule!r}), {len(steps)} commits, {journal.interval_ms / 1000:g}s of "
        "analysis per step:",
        f"  now: {_weights(journal.last_good)}",
    ]
    lines += [f"  {s.label}: {_weights(s.weights)}" for s in steps]
    return "\n".join(lines) + "\n"


def start(policy_dir: Path, state_root: Path, req: Request, deploy: Deployment) -> Journal:
    repo = PolicyRepo.discover(policy_dir)
    if journals.read(state_root) is not None:
        raise UsageError(
            f"a promotion is already under way ({journals.path_in(state_root)}): "
            "`meshctl promote --resume` continues it, `--abort` undoes it"
        )
    if repo.is_dirty():
        raise UsageError("the policy directory has uncommitted changes; promote commits every "
                         "step, so commit or stash them first")
    journal, _ = plan(policy_dir, req)
    journals.write(state_root, journal)
    return _continue(repo, policy_dir, state_root, journal, req, deploy)


def resume(policy_dir: Path, state_root: Path, req: Request, deploy: Deployment) -> Journal:
    journal = _existing(state_root)
    repo = PolicyRepo.discover(policy_dir)
    deploy.reporter.message(
        f"resuming the promotion of {journal.service} {journal.target}: "
        f"{journal.passed} of {len(journal.steps)} steps passed, phase {journal.phase}"
    )
    if journal.phase == "rollback":
        _roll_back(repo, policy_dir, state_root, journal, deploy, "resumed after interruption",
                   raise_after=False)
        raise CheckFailed(f"the promotion of {journal.service} {journal.target} was rolled back")
    return _continue(repo, policy_dir, state_root, journal, req, deploy)


def abort(policy_dir: Path, state_root: Path, deploy: Deployment) -> None:
    journal = _existing(state_root)
    repo = PolicyRepo.discover(policy_dir)
    _roll_back(repo, policy_dir, state_root, journal, deploy, "aborted", raise_after=False)


def _existing(state_root: Path) -> Journal:
    journal = journals.read(state_root)
    if journal is None:
        raise UsageError(f"no promotion to go on with ({journals.path_in(state_root)} is absent)")
    return journal


def _continue(repo: PolicyRepo, policy_dir: Path, state_root: Path, journal: Journal,
              req: Request, deploy: Deployment) -> Journal:
    verdict: Verdict | None = None
    while journal.passed < len(journal.steps):
        i = journal.passed
        pct = journal.steps[i]
        label = _step_label(journal, i)
        weights = step_weights(journal.last_good, journal.target, journal.source, pct)
        commit = _commit_weights(
            repo, policy_dir, journal, weights,
            f"promote {journal.service} {journal.target}: {label}, {_weights(weights)}",
            _analysis_note(verdict, i),
        )
        journal = _save(state_root, journal, phase="step", commit=commit)
        deploy.reporter.message(f"{label}: {_weights(weights)} ({commit[:12]})")
        try:
            deploy.apply(commit, "promote")
        except CheckFailed as exc:
            _roll_back(repo, policy_dir, state_root, journal, deploy,
                       f"{label}: the apply failed its gate: {str(exc).splitlines()[0]}")
        verdict = _judge(journal, req, deploy, label)
        if verdict.outcome != "pass":
            _roll_back(repo, policy_dir, state_root, journal, deploy,
                       f"{label}: {verdict.summary()}")
        deploy.reporter.message(f"{label}: {verdict.summary()}")
        journal = _save(state_root, journal, passed=i + 1, last_good=weights)
    if journal.steps[-1] == 100 and journal.source in journal.last_good:
        final = {v: w for v, w in journal.last_good.items() if v != journal.source}
        commit = _commit_weights(
            repo, policy_dir, journal, final,
            f"promote {journal.service} {journal.target}: done, {journal.source} retired "
            f"from rule {journal.rule!r}",
            _analysis_note(verdict, len(journal.steps)),
        )
        journal = _save(state_root, journal, phase="final", commit=commit)
        deploy.apply(commit, "promote")
        journal = _save(state_root, journal, last_good=final)
    journals.remove(state_root)
    deploy.reporter.message(
        f"{journal.service} {journal.target} promoted: {_weights(journal.last_good)}"
    )
    return journal


def _judge(journal: Journal, req: Request, deploy: Deployment, label: str) -> Verdict:
    """Watch one interval (more while traffic is too thin and the user chose to wait)."""
    window = deploy.window([journal.target, journal.source])
    window.open()
    started = time.monotonic()
    interval = journal.interval_ms / 1000
    deploy.reporter.message(f"{label}: watching {journal.target} and {journal.source} for {interval:g}s")
    waits = 0
    deadline = started + interval
    while True:
        while (now := time.monotonic()) < deadline:
            time.sleep(min(1.0, deadline - now))
            deploy.reporter.live(label, time.monotonic() - started, deadline - started,
                                 window.close())
        samples = window.close()
        # Only the same window compares fairly (load changes latency): at 100% the baseline
        # serves nothing, and the absolute thresholds alone judge.
        verdict = analyze(samples[journal.target], samples[journal.source], req.criteria)
        if verdict.outcome != "inconclusive" or req.on_inconclusive == "fail" \
                or waits >= req.max_waits:
            return verdict
        waits += 1
        deploy.reporter.message(f"{label}: too little traffic, waiting another {interval:g}s "
                                f"({waits}/{req.max_waits})")
        deadline += interval


def _roll_back(repo: PolicyRepo, policy_dir: Path, state_root: Path, journal: Journal,
               deploy: Deployment, why: str, *, raise_after: bool = True) -> None:
    """A commit restoring the last good weights, applied; then CheckFailed with the evidence."""
    journal = _save(state_root, journal, phase="rollback")
    weights = journal.last_good
    commit = _commit_weights(
        repo, policy_dir, journal, weights,
        f"promote {journal.service} {journal.target}: roll back to {_weights(weights)}", why,
    )
    journal = _save(state_root, journal, commit=commit)
    deploy.reporter.message(f"rolling back: {_weights(weights)} ({commit[:12]})")
    deploy.apply(commit, "promote-rollback")
    journals.remove(state_root)
    if raise_after:
        raise CheckFailed(f"promotion of {journal.service} {journal.target} rolled back to "
                          f"{_weights(weights)}\n{why}")


def _commit_weights(repo: PolicyRepo, policy_dir: Path, journal: Journal,
                    weights: dict[str, int], subject: str, body: str) -> str:
    """Write the weights and commit that one file; an unchanged file makes no commit."""
    current = read_weights(policy_dir, journal.service, journal.rule)
    if current.weights != weights or current.created:
        write_weights(policy_dir, journal.service, current, weights)
    path = str(current.path.resolve().relative_to(repo.root))
    run_git(["add", "--", path], repo.root)
    staged = run_git(["diff", "--cached", "--quiet", "--", path], repo.root, check=False)
    if staged.returncode != 0:
        run_git(["commit", "-q", "-m", subject, "-m", body, "--", path], repo.root)
    return repo.resolve("HEAD")


def _save(state_root: Path, journal: Journal, *, commit: str | None = None, **changes: object
          ) -> Journal:
    if commit is not None and commit not in journal.commits:
        changes["commits"] = [*journal.commits, commit]
    updated = journal.model_copy(update=changes)
    journals.write(state_root, updated)
    return updated


def _analysis_note(verdict: Verdict | None, step_index: int) -> str:
    if verdict is None:
        return "First step: no analysis yet." if step_index == 0 else "Resumed step."
    return "The previous step passed its analysis:\n" + verdict.summary()


def _default_source(weights: dict[str, int], target: str) -> str:
    others = sorted(((w, v) for v, w in weights.items() if v != target), reverse=True)
    if not others:
        raise UsageError(f"no version to take traffic from: name one with --from "
                         f"(the rule holds only {target})")
    return others[0][1]


def _check_steps(steps: list[int]) -> None:
    if not steps or any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
        raise UsageError(f"--steps must be rising percentages in 1..100, got {steps}")


def _step_label(journal: Journal, i: int) -> str:
    return f"step {i + 1}/{len(journal.steps)} ({journal.steps[i]}%)"


def _weights(weights: dict[str, int]) -> str:
    return ", ".join(f"{v} {w}" for v, w in sorted(weights.items()))
