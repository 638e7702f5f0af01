"""`meshctl render kubernetes`: manifests pass the Kubernetes schemas and carry the compiled configs."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import kubernetes_validate
import pytest
import yaml

from meshctl import contract
from meshctl.templating import render
from tests.conftest import REPO, run_meshctl

K8S_VERSION = kubernetes_validate.latest_version()


def render_dir(policy: Path, out: Path, *extra: str) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    proc = run_meshctl("render", "kubernetes", str(policy), "--out", str(out), *extra)
    assert proc.returncode == 0, proc.stderr
    return {p.name: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in sorted(out.glob("*.yaml"))}


@pytest.mark.parametrize("policy", ["mesh.d", "tests/cases/compile/full/mesh.d"])
def test_every_object_passes_the_kubernetes_schema_strictly(policy: str, tmp_path: Path) -> None:
    files = render_dir(REPO / policy, tmp_path / "k8s", "--namespace", "shop")
    objects = [obj for name, docs in files.items() if name != "kustomization.yaml" for obj in docs]
    assert {o["kind"] for o in objects} == {"ConfigMap", "Service", "Deployment"}
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        assert obj["metadata"]["namespace"] == "shop"
    kustomization = files["kustomization.yaml"][0]
    assert sorted(kustomization["resources"]) == sorted(n for n in files if n != "kustomization.yaml")


def test_manifests_carry_the_compiled_configs_and_dns_bindings(tmp_path: Path) -> None:
    files = render_dir(REPO / "tests/cases/compile/full/mesh.d", tmp_path / "k8s")
    by_name = {o["metadata"]["name"]: o for docs in files.values() for o in docs if "metadata" in o}
    config = contract.parse_sidecar_config(by_name["meshctl-reviews"]["data"]["config.json"])
    golden = (REPO / "tests/cases/compile/full/golden/services/reviews.json").read_text()
    assert json.loads(golden) | {"revision": config.revision} == json.loads(contract.dump_json(config))
    bindings = contract.parse_runtime_bindings(by_name["meshctl-reviews-v1-bindings"]["data"]["bindings.json"])
    assert bindings.endpoints["reviews"]["v2"] == ("reviews-v2.default.svc.cluster.local:15006",)
    assert bindings.endpoints["ratings"]["v1"] == ("127.0.0.1:19999",)  # static endpoint, as written
    assert "127.0.0.1:19999" in bindings.plaintext_endpoints
    assert bindings.app == "127.0.0.1:9080" and bindings.tls is not None
    deployment = by_name["reviews-v1"]
    assert deployment["spec"]["replicas"] == 2
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert containers["app"]["command"] == ["python", "-m", "shop.reviews"]
    env = {e["name"]: e["value"] for e in containers["app"]["env"]}
    assert env["HTTP_PROXY"] == "http://127.0.0.1:15001" and env["STARS"] == "false"
    assert "proxy_addon" in containers["meshctl-sidecar"]["command"]
    # static-endpoint versions are not deployed
    assert "ratings-v1" not in by_name


def test_output_is_deterministic(tmp_path: Path) -> None:
    first = render_dir(REPO / "mesh.d", tmp_path / "a")
    second = render_dir(REPO / "mesh.d", tmp_path / "b")
    assert first == second


def test_templates_fail_on_undefined_variables() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render("kubernetes/kustomization.yaml.j2", {"namespace": "x"})


def test_gateway_exposes_every_listener_port(tmp_path: Path) -> None:
    from tests.edge.pki import make_ca

    pki = tmp_path / "pki"
    make_ca(pki).issue(["shop.example.com"], pki / "shop.crt", pki / "shop.key")
    policy = tmp_path / "mesh.d"
    policy.mkdir()
    (policy / "mesh.yaml").write_text(f"""\
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {{name: shop}}
spec:
  versions: [{{name: v1, run: [python, -m, shop.catalog]}}]
---
apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {{name: public}}
spec:
  listeners:
    - {{name: web, port: 8080, protocol: http, hosts: [shop.example.com]}}
    - {{name: other, port: 8080, protocol: http, hosts: [other.example.com]}}
    - name: secure
      port: 8443
      protocol: https
      tls: {{certificates: [{{certFile: {pki}/shop.crt, keyFile: {pki}/shop.key}}]}}
  rules: [{{name: all, service: shop}}]
""")
    files = render_dir(policy, tmp_path / "k8s")
    docs = {(o["kind"], o["metadata"]["name"]): o for o in files["gateway-public.yaml"]}
    service = docs[("Service", "gateway-public")]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": 8080},
        {"name": "https-8443", "port": 8443, "targetPort": 8443},
    ]
    [container] = docs[("Deployment", "gateway-public")]["spec"]["template"]["spec"]["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [8080, 8443, 15020]
    for obj in docs.values():
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
