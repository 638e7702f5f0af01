"""`meshctl import istio`: bookinfo-style inputs -> a mesh.d that validates, behaves as Istio
would (policy tests), reports every field it drops, and refuses malformed input with positions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_meshctl

HERE = Path(__file__).resolve().parent
INPUTS = HERE / "inputs" / "istio"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("istio") / "mesh.d"
    result = run_meshctl("import", "istio", str(INPUTS), "--out", str(out), "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_one_file_per_service_and_it_validates_clean(imported: Path) -> None:
    assert sorted(p.name for p in imported.iterdir()) == [
        "gateway-bookinfo-gateway.yaml", "mesh.yaml", "payments-example-com.yaml",
        "productpage.yaml", "ratings.yaml", "reviews.yaml"]
    result = run_meshctl("validate", str(imported), "--format", "json")
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout)["problems"] == []


def test_every_object_and_rule_names_its_source_and_line(imported: Path) -> None:
    reviews = (imported / "reviews.yaml").read_text()
    assert "# imported from VirtualService reviews (" in reviews and "virtual-services.yaml:2)" in reviews
    assert "# imported from DestinationRule reviews (" in reviews
    assert "  # from VirtualService reviews spec.http[0] (" in reviews  # each rule too
    for path in imported.iterdir():
        docs = path.read_text().split("---\n")
        assert all(d.startswith("# imported from ") for d in docs), path


def test_istio_defaults_are_written_out(imported: Path) -> None:
    mesh = (imported / "mesh.yaml").read_text()
    assert "mtls: strict" in mesh  # from the PeerAuthentication
    assert "outboundPolicy: allow-any" in mesh and "timeout: none" in mesh
    assert "timeout: none" in (imported / "ratings.yaml").read_text()  # no timeout in Istio


def test_imported_policy_behaves_as_istio_does(imported: Path, tmp_path: Path) -> None:
    policy = tmp_path / "mesh.d"
    shutil.copytree(imported, policy)
    (policy / "tests").mkdir()
    shutil.copy(HERE / "policytests" / "istio.yaml", policy / "tests" / "istio.yaml")
    result = run_meshctl("test", str(policy))
    assert result.returncode == 0, result.stdout + result.stderr


def test_report_lists_every_dropped_field_and_strict_fails(tmp_path: Path) -> None:
    result = run_meshctl("import", "istio", str(INPUTS), "--out", str(tmp_path / "o"), "--format", "json")
    report = json.loads(result.stdout)
    dropped = {(Path(d["file"]).name, d["field"]) for d in report["dropped"] if d["kind"] == "dropped"}
    assert dropped == {
        ("destination-rules.yaml", "spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection"),
        ("destination-rules.yaml", "spec.trafficPolicy.tls"),
        ("security.yaml", "spec.rules[1].when"),
        ("virtual-services.yaml", "spec.http[3].retries.retryOn"),
        ("virtual-services.yaml", "spec.http[3].corsPolicy"),
        ("virtual-services.yaml", "spec.http[1].match[1].ignoreUriCase"),
        ("virtual-services.yaml", "spec.http[2].match[0].sourceLabels"),  # no productpage v2
        ("virtual-services.yaml", "spec.http[2]"),  # so the whole rule (it could never match)
    }
    cors = next(d for d in report["dropped"] if d["field"] == "spec.http[3].corsPolicy")
    assert cors["line"] == 34 and cors["source"] == "VirtualService reviews"
    strict = run_meshctl("import", "istio", str(INPUTS), "--out", str(tmp_path / "s"), "--strict")
    assert strict.returncode == 1 and "8 field(s) were not carried over" in strict.stderr
    text = run_meshctl("import", "istio", str(INPUTS), "--out", str(tmp_path / "t"))
    assert "virtual-services.yaml:65:11: dropped VirtualService ratings: spec.http[1].match[1].ignoreUriCase" \
        in text.stdout


VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %s}
spec:
  hosts: [reviews]
  http:
    - route:
        - destination: {host: reviews}
"""


@pytest.mark.parametrize(("text", "expected"), [
    ("kind: [unclosed\n", "bad.yaml:2:1: error IMP001: YAML syntax error"),
    ("- just\n- a list\n", "bad.yaml:1:1: error IMP002: not a Kubernetes object"),
    ("apiVersion: networking.istio.io/v1\nmetadata: {name: x}\n", "bad.yaml:1:1: error IMP002: not a Kubernetes"),
    ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [reviews]\n"
     "  http: {route: x}\n", "bad.yaml:6:9: error IMP003: VirtualService r: must be a list"),
    ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [reviews]\n"
     "  http:\n    - timeout: soon\n      route: [{destination: {host: reviews}}]\n",
     "bad.yaml:7:16: error IMP003: VirtualService r: 'soon' is not a duration"),
    (VS % "one" + "---\n" + VS % "two", "bad.yaml:14:10: error IMP003: VirtualService two: host reviews is also "
     "routed by VirtualService one (bad.yaml:1)"),
])
def test_malformed_input_gives_positioned_errors_and_writes_nothing(
    tmp_path: Path, text: str, expected: str
) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    out = tmp_path / "out"
    result = run_meshctl("import", "istio", "bad.yaml", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stdout, result.stdout
    assert "Traceback" not in result.stderr and not out.exists()


def test_virtual_services_bound_to_one_gateway_are_merged_in_order(tmp_path: Path) -> None:
    gw = """apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
"""
    vs = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %s}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
    - match: [{uri: {prefix: %s}}]
      route: [{destination: {host: %s}}]
"""
    (tmp_path / "in.yaml").write_text(gw + "---\n" + vs % ("a", "/a", "alpha") + "---\n" + vs % ("b", "/b", "beta"))
    result = run_meshctl("import", "istio", "in.yaml", "--out", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    gateway = (tmp_path / "out" / "gateway-edge.yaml").read_text()
    assert gateway.index("service: alpha") < gateway.index("service: beta")
    assert run_meshctl("validate", "out", cwd=tmp_path).returncode == 0


def test_source_labels_with_a_version_apply_to_that_versions_sidecars_only(tmp_path: Path) -> None:
    (tmp_path / "vs.yaml").write_text("""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
    - match: [{sourceLabels: {app: reviews, version: v2}}]
      route: [{destination: {host: ratings, subset: v2}}]
    - route: [{destination: {host: ratings, subset: v1}}]
""")
    result = run_meshctl("import", "istio", str(INPUTS / "workloads.yaml"), "vs.yaml", "--out", "m", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    (tmp_path / "m" / "tests").mkdir()
    (tmp_path / "m" / "tests" / "t.yaml").write_text("""tests:
  - name: reviews v2 gets ratings v2
    request: {from: reviews/v2, url: http://ratings/r}
    expect: {rule: ratings-0, backend: ratings/v2}
  - name: reviews v1 does not
    request: {from: reviews/v1, url: http://ratings/r}
    expect: {rule: ratings-1, backend: ratings/v1}
  - name: nor does productpage
    request: {from: productpage, url: http://ratings/r}
    expect: {rule: ratings-1}
""")
    tested = run_meshctl("test", "m", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
