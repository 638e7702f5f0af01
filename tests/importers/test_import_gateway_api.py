"""`meshctl import gateway-api`: HTTPRoute and GRPCRoute (GAMMA Service parents and Gateway
parents), Gateway listeners -> a mesh.d that validates and behaves as the Gateway API says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from meshctl.importers.common import rescale
from tests.conftest import run_meshctl

HERE = Path(__file__).resolve().parent
INPUTS = HERE / "inputs" / "gateway-api"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gateway-api") / "mesh.d"
    result = run_meshctl("import", "gateway-api", str(INPUTS), "--out", str(out), "--strict")
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_it_validates_and_names_its_sources(imported: Path) -> None:
    assert sorted(p.name for p in imported.iterdir()) == [
        "gateway-bookinfo-gateway.yaml", "mesh.yaml", "productpage.yaml", "reviews.yaml", "shipping.yaml"]
    assert run_meshctl("validate", str(imported)).returncode == 0
    reviews = (imported / "reviews.yaml").read_text()
    assert "  # from HTTPRoute reviews spec.rules[1].matches[0] (" in reviews
    assert "protocol: grpc" in (imported / "shipping.yaml").read_text()


def test_rules_are_ordered_by_gateway_api_precedence(imported: Path) -> None:
    reviews = (imported / "reviews.yaml").read_text()
    order = [reviews.index(s) for s in ("gateway/bookinfo-gateway", "exact: /v2/all", "segmentPrefix: /v2",
                                        "end-user:", "weight: 50")]
    assert order == sorted(order)


def test_imported_routes_behave_as_the_gateway_api_says(imported: Path, tmp_path: Path) -> None:
    policy = tmp_path / "mesh.d"
    shutil.copytree(imported, policy)
    (policy / "tests").mkdir()
    shutil.copy(HERE / "policytests" / "gateway-api.yaml", policy / "tests" / "gateway-api.yaml")
    result = run_meshctl("test", str(policy))
    assert result.returncode == 0, result.stdout + result.stderr


def test_filters_without_equivalent_are_reported(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{kind: Service, name: reviews}]
  rules:
    - filters:
        - {type: ExtensionRef, extensionRef: {group: x, kind: y, name: z}}
      backendRefs: [{name: reviews, port: 80}]
      timeouts: {request: 1s, backendRequest: 500ms}
""")
    result = run_meshctl("import", "gateway-api", "r.yaml", "--out", "o", "--format", "json", "--strict", cwd=tmp_path)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert [(d["line"], d["field"]) for d in report["dropped"] if d["kind"] == "dropped"] == [
        (8, "spec.rules[0].filters[0]"), (10, "spec.rules[0].timeouts.backendRequest")]


@pytest.mark.parametrize(("weights", "expected"), [
    ([1, 1], [50, 50]), ([3, 1], [75, 25]), ([1, 1, 1], [34, 33, 33]), ([0, 5], [0, 100]), ([90, 10], [90, 10]),
])
def test_relative_weights_rescale_to_100(weights: list[int], expected: list[int]) -> None:
    assert rescale(weights) == expected
