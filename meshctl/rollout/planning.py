"""What an apply will do: which sidecars change, which instances start or stop, in which waves.

Sidecars are compared on their compiled config without the revision: a sidecar whose policy
did not change is left alone (no reload, nothing to confirm).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshctl.compiled import CompiledMesh
from meshctl.contract import ContractError, SidecarConfig, parse_sidecar_config
from meshctl.rollout.gate import GateSpec
from meshctl.rollout.waves import split_waves
from meshctl.runtime.plan import Plan, ProcessSpec, build_plan
from meshctl.runtime.ports import PortBook
from meshctl.runtime.state import StateDir
from meshctl.runtime.topology import topology_of


@dataclass
class RolloutPlan:
    base: str | None
    target: str
    commit: str | None  # the git commit applied; None for a dirty work tree
    compiled: CompiledMesh
    old: Plan
    new: Plan
    changed: list[str] = field(default_factory=list)  # kept instances whose config changes
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)  # processes whose command or env changed
    waves: list[list[str]] = field(default_factory=list)
    gate: GateSpec = GateSpec()

    @property
    def empty(self) -> bool:
        return not (self.changed or self.added or self.removed or self.restarted)

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "target": self.target,
            "changed": self.changed,
            "added": self.added,
            "removed": self.removed,
            "restarted": self.restarted,
            "waves": self.waves,
            "gate": {
                "window_ms": self.gate.window_ms,
                "max_error_rate": self.gate.max_error_rate,
                "max_p99_ms": self.gate.max_p99_ms,
            },
        }


def strip_revision(config: SidecarConfig) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    data.pop("revision", None)
    return data


def running_config(state: StateDir, instance: str) -> SidecarConfig | None:
    try:
        return parse_sidecar_config(state.sidecar_config(instance).read_text(encoding="utf-8"))
    except (FileNotFoundError, ContractError):
        return None


def gate_of(compiled: CompiledMesh) -> tuple[GateSpec, int | str]:
    """The target revision's own rollout settings (its manifest, defaults applied)."""
    rollout = compiled.manifest.rollout
    gate = rollout.gate
    return GateSpec(gate.window_ms, gate.max_error_rate, gate.max_p99_ms), rollout.canary


def kept_gateway_overrides(
    old: Plan, gateways: set[str], listeners: set[str] | None = None
) -> dict[str, int]:
    """Gateways `up` put on another port than their own (`--gateway-port`) stay there; the
    others follow their Gateway's port, which the new revision may change."""
    own = {g.name: g for g in old.topology.gateways}
    kept = {}
    for s in old.sidecars:
        name = s.sidecar.removeprefix("gateway/")
        if not s.is_gateway or name not in gateways or name not in own:
            continue
        spec = own[name]
        if s.outbound_port != spec.port:
            kept[name] = s.outbound_port or 0
        for lst in spec.all_listeners()[1:]:
            port = s.gateway_listeners.get(lst.name)
            key = f"{name}:{lst.name}"
            if port is not None and port != lst.port and (listeners is None or key in listeners):
                kept[key] = port
    return kept


def plan_rollout(
    state: StateDir,
    old: Plan,
    compiled: CompiledMesh,
    *,
    base: str | None,
    commit: str | None,
    running: frozenset[str],
    canary: int | str | None = None,
    gate: GateSpec | None = None,
) -> RolloutPlan:
    ports = PortBook(state.ports, required=True)
    topology = topology_of(compiled.manifest)
    new = build_plan(
        topology,
        policy_dir=Path(old.policy_dir),
        revision=compiled.revision,
        state=state,
        ports=ports,
        workdir=Path(old.policy_dir).parent,
        gateway_ports=kept_gateway_overrides(old, {g.name for g in topology.gateways}, {
            f"{g.name}:{lst.name}" for g in topology.gateways for lst in g.all_listeners()}),
        running=running,
        python=old.python,
    )
    ports.save()
    old_names = {s.instance for s in old.sidecars}
    new_names = {s.instance for s in new.sidecars}
    default_gate, default_canary = gate_of(compiled)
    result = RolloutPlan(
        base=base,
        target=compiled.revision,
        commit=commit,
        compiled=compiled,
        old=old,
        new=new,
        added=sorted(new_names - old_names),
        removed=sorted(old_names - new_names),
        gate=gate or default_gate,
    )
    for record in sorted(new.sidecars, key=lambda s: (s.is_gateway, s.sidecar, s.instance)):
        if record.instance not in old_names:
            continue
        current = running_config(state, record.instance)
        target = compiled.configs[record.sidecar]
        if current is None or strip_revision(current) != strip_revision(target):
            result.changed.append(record.instance)
    old_procs: dict[str, ProcessSpec] = {p.name: p for p in old.processes}
    result.restarted = sorted(
        p.name for p in new.processes if p.name in old_procs and old_procs[p.name] != p
    )
    result.waves = worker_waves(result.changed, new, canary if canary is not None else default_canary)
    return result


def worker_waves(changed: list[str], new: Plan, canary: int | str) -> list[list[str]]:
    """Waves as `split_waves` makes them, a gateway's workers counted as one: they serve one
    port together, so they take a new config in the same wave (confirmed by every worker)."""
    unit_of = {s.instance: s.sidecar if s.is_gateway else s.instance for s in new.sidecars}
    units: dict[str, list[str]] = {}
    for instance in changed:
        units.setdefault(unit_of.get(instance, instance), []).append(instance)
    return [[i for unit in wave for i in units[unit]] for wave in split_waves(list(units), canary)]


def describe(plan: RolloutPlan) -> str:
    lines = [f"apply {plan.target} (applied now: {plan.base or 'nothing'})"]
    if plan.empty:
        lines.append("  no sidecar config changes; nothing to roll out")
    for name in plan.added:
        lines.append(f"  start   {name} (new instance and its sidecar)")
    for i, wave in enumerate(plan.waves):
        label = "canary" if i == 0 and len(plan.waves) > 1 else f"wave {i + 1}"
        lines.append(f"  {label:<7} update {', '.join(wave)}")
    for name in plan.restarted:
        lines.append(f"  restart {name} (its command or environment changed)")
    for name in plan.removed:
        lines.append(f"  stop    {name} (no longer in the policy)")
    if plan.waves:
        g = plan.gate
        lines.append(
            f"  gate after each wave: {g.window_ms / 1000:g}s window, error rate <= "
            f"{g.max_error_rate:g}%, p99 <= {g.max_p99_ms}ms"
        )
    return "\n".join(lines) + "\n"
