"""Rollout planning without processes: which sidecars change, what starts and stops, waves."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from meshctl.cli.up import parse_gateway_ports
from meshctl.compile.output import compiled_mesh
from meshctl.compiled import CompiledMesh
from meshctl.errors import UsageError
from meshctl.pipeline import build
from meshctl.rollout.planning import describe, plan_rollout
from meshctl.runtime.plan import Plan, build_plan
from meshctl.runtime.ports import PortBook
from meshctl.runtime.sidecar_files import write_sidecar_config
from meshctl.runtime.state import StateDir
from meshctl.runtime.topology import topology_of
from meshctl.sources import PolicyFile

BASE = """\
apiVersion: meshctl/v1alpha1
kind: Mesh
metadata: {name: m}
spec: {trustDomain: m.local, rollout: {canary: 1, gate: {window: 3s, maxErrorRate: 2, maxP99: 1s}}}
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: web}
spec:
  versions: [{name: v1, replicas: 3, run: [python, -m, web]}]
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: api}
spec:
  versions:
    - {name: v1, run: [python, -m, api]}
    - {name: v2, run: [python, -m, api]}
---
apiVersion: meshctl/v1alpha1
kind: Route
metadata: {name: api}
spec:
  service: api
  rules: [{name: split, backends: [{version: v1, weight: 90}, {version: v2, weight: 10}]}]
---
apiVersion: meshctl/v1alpha1
kind: AccessPolicy
metadata: {name: api}
spec: {service: api, rules: [{from: [web]}]}
"""


def compiled(text: str, revision: str) -> CompiledMesh:
    result = build([PolicyFile(path="mesh.d/mesh.yaml", text=text)], revision)
    assert result.compiled is not None, result.diagnostics
    return compiled_mesh(result.compiled)


def running(tmp: Path, text: str, revision: str) -> tuple[StateDir, Plan]:
    state = StateDir(tmp / "state")
    state.ensure()
    mesh = compiled(text, revision)
    ports = PortBook(state.ports)
    plan = build_plan(
        topology_of(mesh.manifest), policy_dir=tmp / "mesh.d", revision=revision, state=state,
        ports=ports, workdir=tmp,
    )
    ports.save()
    for record in plan.sidecars:
        write_sidecar_config(state, record.instance, mesh.configs[record.sidecar])
    return state, plan


def test_only_callers_of_a_changed_route_are_updated_canary_first(tmp_path: Path) -> None:
    state, old = running(tmp_path, BASE, "r1")
    new = compiled(BASE.replace("weight: 90", "weight: 50").replace("weight: 10", "weight: 50"), "r2")
    plan = plan_rollout(state, old, new, base="r1", commit="r2", running=frozenset())
    assert plan.changed == ["web-v1-0", "web-v1-1", "web-v1-2"]  # api's own sidecars keep theirs
    assert plan.waves == [["web-v1-0"], ["web-v1-1", "web-v1-2"]]
    assert (plan.added, plan.removed, plan.restarted) == ([], [], [])
    assert (plan.gate.window_ms, plan.gate.max_error_rate, plan.gate.max_p99_ms) == (3000, 2, 1000)
    text = describe(plan)
    assert "canary  update web-v1-0" in text and "wave 2  update web-v1-1, web-v1-2" in text


def test_a_new_revision_with_the_same_policy_changes_nothing(tmp_path: Path) -> None:
    state, old = running(tmp_path, BASE, "r1")
    # Started through another name of the interpreter (the `meshctl` script says python3).
    old.python = "/opt/venv/bin/python3"
    for i, p in enumerate(old.processes):
        old.processes[i] = replace(p, argv=(old.python, *p.argv[1:]))
    plan = plan_rollout(state, old, compiled(BASE, "r2"), base="r1", commit="r2",
                        running=frozenset())
    assert plan.empty and plan.waves == [] and plan.restarted == []
    assert "nothing to roll out" in describe(plan)


def test_versions_and_replicas_that_come_and_go(tmp_path: Path) -> None:
    state, old = running(tmp_path, BASE, "r1")
    text = (BASE.replace("replicas: 3", "replicas: 2")
            .replace("{name: v2, run: [python, -m, api]}",
                     "{name: v2, run: [python, -m, api], env: {X: '1'}}"))
    plan = plan_rollout(state, old, compiled(text, "r2"), base="r1", commit="r2",
                        running=frozenset(), canary="50%")
    assert plan.removed == ["web-v1-2"]
    assert plan.added == []
    assert plan.restarted == ["api-v2-0"]
    # Ports of instances that stay are kept.
    old_ports = {s.instance: s.inbound_port for s in old.sidecars}
    assert all(old_ports[s.instance] == s.inbound_port for s in plan.new.sidecars)


def test_canary_share_and_a_new_service(tmp_path: Path) -> None:
    state, old = running(tmp_path, BASE, "r1")
    text = BASE + """\
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: db}
spec:
  versions: [{name: v1, run: [python, -m, db]}]
"""
    plan = plan_rollout(state, old, compiled(text, "r2"), base="r1", commit="r2",
                        running=frozenset(), canary="50%")
    assert plan.added == ["db-v1-0"]
    # Every existing sidecar may now call db: all of them change, half in the canary wave.
    assert len(plan.changed) == 5 and [len(w) for w in plan.waves] == [3, 2]
    assert "start   db-v1-0" in describe(plan)


def test_gateway_port_overrides_name_a_gateway_or_one_of_its_listeners() -> None:
    assert parse_gateway_ports(["edge=0", "edge:https=8443"]) == {"edge": 0, "edge:https": 8443}
    # an empty gateway or listener name would match nothing and be ignored: refused instead
    for bad in ("edge:=0", ":https=1", "=5", "edge", "edge=x", "edge=65536"):
        with pytest.raises(UsageError, match="NAME=PORT or NAME:LISTENER=PORT"):
            parse_gateway_ports([bad])
