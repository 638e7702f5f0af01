"""Istio label values are compiled per destination and version; render uses the Mesh namespace."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from meshctl import contract
from meshctl.pipeline import build
from meshctl.sources.worktree import read_worktree
from tests.conftest import REPO, run_meshctl


def _compile(policy: Path) -> dict[str, contract.SidecarConfig]:
    result = build(read_worktree(policy), "test")
    assert result.compiled is not None, result.diagnostics
    return result.compiled.configs


def _with_mesh(tmp_path: Path, **spec: object) -> Path:
    work = tmp_path / "mesh.d"
    shutil.copytree(REPO / "mesh.d", work)
    mesh_file = work / "mesh.yaml"
    fields = "".join(f"  {key}: {value}\n" for key, value in spec.items())
    mesh_file.write_text(mesh_file.read_text().replace("spec:\n", "spec:\n" + fields, 1))
    return work


def test_every_destination_version_has_istio_labels(tmp_path: Path) -> None:
    configs = _compile(_with_mesh(tmp_path, namespace="shop", cluster="east"))
    reviews = configs["frontend"].destinations["reviews"].labels
    assert reviews is not None
    assert reviews.service == "reviews.shop.svc.cluster.local"
    assert (reviews.name, reviews.namespace) == ("reviews", "shop")
    v2 = reviews.workloads["v2"]
    assert (v2.workload, v2.app, v2.version, v2.canonical_service, v2.canonical_revision) == (
        "reviews-v2", "reviews", "v2", "reviews", "v2")
    assert (v2.namespace, v2.cluster, v2.principal) == ("shop", "east", "spiffe://shop.local/service/reviews")
    own = configs["frontend"].telemetry
    assert own.labels is not None and own.labels.workloads["v1"].workload == "frontend-v1"
    gateway = configs["gateway/public"].telemetry.labels
    assert gateway is not None
    gw = gateway.workloads[""]
    assert (gw.workload, gw.app, gw.version, gw.canonical_revision) == (
        "gateway-public", "gateway-public", "unknown", "latest")
    assert gw.principal == "spiffe://shop.local/gateway/public"


def test_namespace_and_cluster_default_to_istios() -> None:
    config = _compile(REPO / "mesh.d")["reviews"]
    assert (config.telemetry.namespace, config.telemetry.cluster) == ("default", "Kubernetes")


def test_render_uses_the_mesh_namespace_unless_told(tmp_path: Path) -> None:
    policy = _with_mesh(tmp_path, namespace="shop")
    for extra, expected in (((), "shop"), (("--namespace", "other"), "other")):
        out = tmp_path / f"k8s-{expected}"
        proc = run_meshctl("render", "kubernetes", str(policy), "--out", str(out), *extra)
        assert proc.returncode == 0, proc.stderr
        docs = [d for p in out.glob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if d]
        objects = [d for d in docs if "metadata" in d]
        assert {o["metadata"]["namespace"] for o in objects} == {expected}
        configmap = next(o for o in objects if o["metadata"]["name"] == "meshctl-reviews")
        config = contract.parse_sidecar_config(configmap["data"]["config.json"])
        # sidecars report the namespace they run in
        assert config.telemetry.namespace == expected
        assert config.destinations["ratings"].labels.service == f"ratings.{expected}.svc.cluster.local"  # type: ignore[union-attr]


def test_a_bad_namespace_is_a_positioned_error(tmp_path: Path) -> None:
    policy = _with_mesh(tmp_path, namespace="Not_A_Namespace")
    proc = run_meshctl("validate", str(policy))
    assert proc.returncode == 1
    assert "mesh.yaml:" in proc.stdout and "namespace" in proc.stdout
