"""`Gateway.spec.workers` from policy to plan: compiled, diffed, rendered, laid out as processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshctl.compile.output import compiled_mesh
from meshctl.compiled import CompiledMesh
from meshctl.diff.engine import diff_meshes
from meshctl.diff.report import text_report
from meshctl.errors import UsageError
from meshctl.pipeline import build
from meshctl.render.kubernetes import RenderOptions, render_manifests
from meshctl.rollout.planning import worker_waves
from meshctl.runtime.file_sd import targets
from meshctl.runtime.launch import check_ports_free
from meshctl.runtime.plan import Plan, build_plan
from meshctl.runtime.ports import PortBook
from meshctl.runtime.sidecar_files import bindings_for
from meshctl.runtime.state import StateDir
from meshctl.runtime.topology import topology_of
from meshctl.sources.worktree import read_worktree
from tests.support.procs import free_port

PORT = free_port()  # the gateway's declared port; nothing listens on it but these tests
POLICY = """\
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: catalog}
spec:
  versions: [{name: v1, run: [app]}]
---
apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {name: edge}
spec:
  port: %(port)d
%(workers)s  rules: [{name: all, service: catalog}]
"""


def compiled(tmp_path: Path, workers: str | None) -> CompiledMesh:
    d = tmp_path / f"mesh-{workers}"
    d.mkdir()
    (d / "mesh.yaml").write_text(POLICY % {"port": PORT, "workers": f"  workers: {workers}\n" if workers else ""})
    result = build(read_worktree(d), revision=f"r-{workers}")
    assert result.compiled is not None, [d.message for d in result.diagnostics]
    return compiled_mesh(result.compiled)


def planned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: str) -> tuple[CompiledMesh, StateDir, Plan]:
    """The local runtime's plan of the policy with `workers`, on ports claimed below `tmp_path`."""
    monkeypatch.setenv("MESHCTL_PORT_CLAIMS", str(tmp_path / "claims"))
    out = compiled(tmp_path, workers)
    state = StateDir(tmp_path / "state")
    state.ensure()
    plan = build_plan(topology_of(out.manifest), policy_dir=tmp_path, revision=out.revision,
                      state=state, ports=PortBook(state.ports), workdir=tmp_path)
    return out, state, plan


def test_default_is_one_worker_and_auto_stays_auto_until_the_runtime(tmp_path: Path) -> None:
    assert compiled(tmp_path, None).manifest.gateways[0].workers == 1
    auto = compiled(tmp_path, "auto")
    assert auto.manifest.gateways[0].workers == "auto"
    assert auto.configs["gateway/edge"].gateway.workers == "auto"  # type: ignore[union-attr]
    cores = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    assert topology_of(auto.manifest).gateways[0].workers == min(cores, 64)


def test_diff_says_workers_in_words(tmp_path: Path) -> None:
    one, two = compiled(tmp_path, None), compiled(tmp_path, "2")
    text = text_report("a", "b", diff_meshes(one.configs, two.configs))
    assert "~ gateway/edge: workers 1 -> 2" in text.splitlines(), text


def test_kubernetes_runs_workers_as_pods(tmp_path: Path) -> None:
    files = render_manifests(compiled(tmp_path, "3"), RenderOptions())
    assert "  replicas: 3\n" in files["gateway-edge.yaml"]
    auto = render_manifests(compiled(tmp_path, "auto"), RenderOptions())
    assert "  replicas: 1\n" in auto["gateway-edge.yaml"]


def test_plan_has_one_process_per_worker_on_shared_ports(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    out, state, plan = planned(tmp_path, monkeypatch, "3")
    gws = [s for s in plan.sidecars if s.is_gateway]
    assert [g.instance for g in gws] == ["gateway-edge", "gateway-edge_w1", "gateway-edge_w2"]
    assert [g.worker for g in gws] == [0, 1, 2]
    assert {g.outbound_port for g in gws} == {PORT}
    assert len({g.admin_port for g in gws}) == 3
    assert [p.name for p in plan.processes if p.role == "gateway"] == [g.instance for g in gws]
    listeners = [bindings_for(g, plan, None).listeners for g in gws]
    assert all(lst.shared for lst in listeners) and [lst.worker for lst in listeners] == [0, 1, 2]

    # Prometheus scrapes every worker: one workload, a worker label each.
    groups = [g for g in targets(state, plan) if g["labels"]["service"] == "gateway-edge"]
    assert [g["labels"]["worker"] for g in groups] == ["0", "1", "2"]
    assert {g["labels"]["workload"] for g in groups} == {"gateway-edge"}
    assert sorted(g["targets"][0] for g in groups) == sorted(f"127.0.0.1:{g.admin_port}" for g in gws)

    # The workers of one gateway are one unit of a rollout wave.
    changed = ["catalog-v1-0", *[g.instance for g in gws]]
    assert worker_waves(changed, plan, 1) == [["catalog-v1-0"], [g.instance for g in gws]]
    assert worker_waves(changed[1:], plan, 1) == [[g.instance for g in gws]]


def test_a_new_worker_joins_ports_its_siblings_hold_but_nothing_else(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    _, _, plan = planned(tmp_path, monkeypatch, "2")
    with socket.socket() as held:  # what the running first worker holds
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(("127.0.0.1", PORT))
        held.listen()
        check_ports_free(plan, skip=["gateway-edge", "catalog-v1-0"])  # worker 1 may join
        with pytest.raises(UsageError, match=rf"gateway-edge_w1\) gateway listener: port {PORT}"):
            check_ports_free(plan, skip=["catalog-v1-0"])  # nobody of ours holds it


def test_status_sums_the_workers_into_one_gateway_line(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from meshctl.cli.status import status_json, status_text
    from meshctl.runtime.metrics import Snapshot, window
    from meshctl.runtime.observe import SidecarStatus

    out, _, plan = planned(tmp_path, monkeypatch, "2")
    w0, w1 = [s for s in plan.sidecars if s.is_gateway]
    inf = float("inf")
    # worker 0: 30 requests under 5 ms; worker 1: 12, two of them between 5 and 10 ms
    fast = Snapshot(at=1.0, requests=30, buckets={5.0: 30, 10.0: 30, inf: 30})
    slower = Snapshot(at=1.0, requests=12, buckets={5.0: 10, 10.0: 12, inf: 12})
    statuses = [
        SidecarStatus(w0, out.revision, True, 0, "ready", window(Snapshot(at=0.0), fast)),
        SidecarStatus(w1, out.revision, False, 3, "sidecar backoff", window(Snapshot(at=0.0), slower)),
    ]
    [line] = [ln for ln in status_text(plan, out.revision, statuses).splitlines()
              if ln.startswith("gateway edge")]
    assert "1/2 workers healthy" in line and "42.0 req/s" in line and "2 workers" in line, line
    # the workers' histograms pooled: rank 41.58 of 42 is in (5, 10] ms, 40 requests below it
    assert "p99 8.9ms" in line, line  # 8.95
    import json

    [gw] = json.loads(status_json(plan, out.revision, statuses))["gateways"]
    assert (gw["workers"], gw["workers_healthy"], gw["rps"], gw["requests"], gw["restarts"]) == (
        2, 1, 42.0, 42, 3)
    assert gw["healthy"] is True and gw["status"] == "sidecar backoff"
    assert (gw["p50_ms"], gw["p99_ms"], gw["error_rate"]) == (2.6, 8.9, 0.0)
