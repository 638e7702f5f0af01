"""`meshctl ca`: exit codes, output, and a rotation that re-issues what a runtime wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509

from meshctl.cli.main import main
from meshctl.identity import MeshCA


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_show_without_ca_is_a_clear_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "ca", "show", "--state", str(tmp_path / "st"))
    assert code == 2 and out == ""
    assert "no mesh CA" in err and "Traceback" not in err


def test_init_reads_trust_domain_from_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "mesh.d"
    policy.mkdir()
    (policy / "mesh.yaml").write_text(
        "apiVersion: meshctl/v1alpha1\nkind: Mesh\nmetadata: {name: m}\n"
        "spec: {trustDomain: corp.example}\n"
    )
    code, out, _ = run(capsys, "ca", "init", "--dir", str(policy), "--format", "json")
    assert code == 0
    info = json.loads(out)
    assert info["trust_domain"] == "corp.example"
    # default state: .meshctl/ beside the policy directory
    assert Path(info["directory"]) == (tmp_path / ".meshctl" / "ca").resolve()
    assert "PRIVATE" not in out


def test_issue_and_rotate_reissues_sidecar_certs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    st = str(tmp_path / "st")
    assert run(capsys, "ca", "init", "--state", st, "--trust-domain", "shop.local")[0] == 0
    code, out, _ = run(capsys, "ca", "issue", "gateway/public", "--out",
                       str(tmp_path / "st" / "sidecars" / "gw"), "--state", st, "--ttl", "1h")
    assert code == 0
    files = json.loads(out)
    cert = x509.load_pem_x509_certificate(Path(files["cert_file"]).read_bytes())
    assert "spiffe://shop.local/gateway/public" in str(cert.extensions)
    old_pem = Path(files["cert_file"]).read_bytes()

    code, out, err = run(capsys, "ca", "rotate", "--state", st, "--format", "json")
    assert code == 0, err
    assert json.loads(out)["rotation_in_progress"] is True
    assert "re-issued 1 sidecar" in err
    ca = MeshCA.load(tmp_path / "st" / "ca")
    new_pem = Path(files["cert_file"]).read_bytes()
    assert new_pem != old_pem and ca.issued_by_current(new_pem)
    assert Path(files["ca_file"]).read_bytes() == ca.bundle_pem  # both roots trusted

    code, out, _ = run(capsys, "ca", "show", "--state", st, "--format", "json")
    [workload] = json.loads(out)["workloads"]
    assert workload["identity"] == "spiffe://shop.local/gateway/public"
    assert workload["trusted"] and workload["issued_by_current_root"]

    code, out, _ = run(capsys, "ca", "rotate", "--finish", "--state", st, "--format", "json")
    assert code == 0 and json.loads(out)["rotation_in_progress"] is False
    assert len(x509.load_pem_x509_certificates(Path(files["ca_file"]).read_bytes())) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("ca", "issue", "Bad_Name", "--out", "x"), "DNS-1123"),
        (("ca", "issue", "a", "--out", "x", "--ttl", "3d"), "--ttl"),
        (("ca", "issue", "spiffe://other.local/service/a", "--out", "x"), "outside"),
        (("ca", "init", "--trust-domain", "Not A Domain"), "trust domain"),
        (("ca", "show", "--format", "yaml"), "--format"),
        (("ca", "issue", "a", "--out", "mesh.d/certs"), "policy directory"),
    ],
)
def test_bad_input_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    st = str(tmp_path / "st")
    if argv[1] != "init":
        assert run(capsys, "ca", "init", "--state", st, "--trust-domain", "shop.local")[0] == 0
    code, _, err = run(capsys, *argv, "--state", st)
    assert code == 2
    assert message in err and "Traceback" not in err
