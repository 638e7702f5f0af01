"""The mesh CA: creation, issuing, rotation and the files a sidecar reads."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import threading
from pathlib import Path
from socket import create_connection, create_server
from typing import Any

import pytest
from cryptography import x509

from meshctl.contract import TlsFiles
from meshctl.identity import (
    CAError,
    MeshCA,
    dns_name,
    needs_renewal,
    reissue_all,
    renew_if_due,
    spiffe_id,
    write_sidecar_certs,
    write_trust_bundle,
)
from meshctl.spiffe import SpiffeIdError, parse

TD = "shop.local"


def _handshake(server_files: TlsFiles, client_files: TlsFiles, expect: str) -> dict[str, Any]:
    """Real TLS over a socket: the server requires a client cert; returns the server's view."""
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv.load_cert_chain(server_files.cert_file, server_files.key_file)
    srv.load_verify_locations(server_files.ca_file)
    srv.verify_mode = ssl.CERT_REQUIRED
    cli = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cli.load_cert_chain(client_files.cert_file, client_files.key_file)
    cli.load_verify_locations(client_files.ca_file)
    seen: dict[str, Any] = {}
    with create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with srv.wrap_socket(conn, server_side=True) as tls:
                    seen.update(tls.getpeercert() or {})
                    tls.sendall(b"ok")
            except ssl.SSLError as exc:
                seen["error"] = str(exc)

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with cli.wrap_socket(
                create_connection(("127.0.0.1", port)), server_hostname=dns_name(expect)
            ) as tls:
                tls.recv(2)
        finally:
            thread.join(10)
    return seen


def test_created_once_with_private_files(tmp_path: Path) -> None:
    ca = MeshCA.load_or_create(tmp_path / "ca", TD)
    again = MeshCA.load_or_create(tmp_path / "ca", TD)
    assert again.cert == ca.cert
    assert os.stat(tmp_path / "ca").st_mode & 0o777 == 0o700
    assert os.stat(tmp_path / "ca" / "ca-key.pem").st_mode & 0o777 == 0o600
    assert ca.trust_domain == TD


def test_other_trust_domain_is_refused(tmp_path: Path) -> None:
    MeshCA.load_or_create(tmp_path / "ca", TD)
    with pytest.raises(CAError, match="trust domain 'shop.local'"):
        MeshCA.load_or_create(tmp_path / "ca", "other.local")


def test_issued_cert_carries_spiffe_id_and_is_short_lived(tmp_path: Path) -> None:
    ca = MeshCA.load_or_create(tmp_path / "ca", TD)
    ident = spiffe_id(TD, "service", "reviews")
    issued = ca.issue(ident, dt.timedelta(hours=1))
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [ident]
    assert sans.get_values_for_type(x509.DNSName) == ["reviews.service.shop.local"]
    life = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=55) < life <= dt.timedelta(hours=1)
    assert ca.verifies(issued.cert_pem)


def test_issue_refuses_foreign_or_bad_ids(tmp_path: Path) -> None:
    ca = MeshCA.load_or_create(tmp_path / "ca", TD)
    with pytest.raises(CAError, match="outside"):
        ca.issue("spiffe://evil.local/service/reviews")
    with pytest.raises(CAError, match="SPIFFE"):
        ca.issue("https://shop.local/service/reviews")
    with pytest.raises(CAError, match="positive"):
        ca.issue(spiffe_id(TD, "service", "a"), dt.timedelta(0))


def test_spiffe_ids_parse_and_check() -> None:
    assert str(parse("spiffe://shop.local/gateway/public")) == "spiffe://shop.local/gateway/public"
    for bad in ("spiffe://shop.local/service", "spiffe://Shop/service/a", "spiffe://a/pod/x"):
        with pytest.raises(SpiffeIdError):
            parse(bad)


def test_sidecar_files_give_mutual_tls(tmp_path: Path) -> None:
    ca = MeshCA.load_or_create(tmp_path / "ca", TD)
    server_id = spiffe_id(TD, "service", "reviews")
    server = write_sidecar_certs(ca, server_id, tmp_path / "reviews")
    client = write_sidecar_certs(ca, spiffe_id(TD, "gateway", "public"), tmp_path / "gw")
    assert os.stat(server.key_file).st_mode & 0o777 == 0o600
    seen = _handshake(server, client, expect=server_id)
    assert ("URI", "spiffe://shop.local/gateway/public") in seen["subjectAltName"]


def test_client_refuses_server_with_another_identity(tmp_path: Path) -> None:
    ca = MeshCA.load_or_create(tmp_path / "ca", TD)
    server = write_sidecar_certs(ca, spiffe_id(TD, "service", "ratings"), tmp_path / "r")
    client = write_sidecar_certs(ca, spiffe_id(TD, "service", "a"), tmp_path / "a")
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _handshake(server, client, expect=spiffe_id(TD, "service", "reviews"))


def test_rotation_keeps_old_and_new_certs_working(tmp_path: Path) -> None:
    ca = MeshCA.load_or_create(tmp_path / "ca", TD)
    server_id = spiffe_id(TD, "service", "reviews")
    old_server = write_sidecar_certs(ca, server_id, tmp_path / "s")
    old_root = ca.cert
    rotated = ca.rotate()
    assert rotated.cert != old_root and len(rotated.bundle) == 2
    new_client = write_sidecar_certs(rotated, spiffe_id(TD, "service", "a"), tmp_path / "c")
    # The server keeps its old cert; its bundle learns the new root (phase one of a rotation).
    write_trust_bundle(rotated, tmp_path / "s")
    _handshake(old_server, new_client, expect=server_id)
    assert needs_renewal(tmp_path / "s", rotated) is False  # old root still trusted
    retired = rotated.retire_previous()
    assert len(retired.bundle) == 1
    assert needs_renewal(tmp_path / "s", retired) is True
    assert renew_if_due(retired, server_id, tmp_path / "s") is True
    assert renew_if_due(retired, server_id, tmp_path / "s") is False
    [files] = reissue_all(retired, [(server_id, tmp_path / "s")])
    assert retired.verifies(Path(files.cert_file).read_bytes())


def test_renewal_due_after_half_life(tmp_path: Path) -> None:
    ca = MeshCA.load_or_create(tmp_path / "ca", TD)
    write_sidecar_certs(ca, spiffe_id(TD, "service", "a"), tmp_path / "a", dt.timedelta(hours=2))
    now = dt.datetime.now(dt.UTC)
    assert not needs_renewal(tmp_path / "a", ca, now)
    assert needs_renewal(tmp_path / "a", ca, now + dt.timedelta(hours=1, minutes=5))
    assert needs_renewal(tmp_path / "missing", ca)


def test_damaged_ca_is_reported(tmp_path: Path) -> None:
    ca = MeshCA.load_or_create(tmp_path / "ca", TD)
    other = MeshCA.load_or_create(tmp_path / "other", TD)
    (tmp_path / "ca" / "ca-key.pem").write_bytes((tmp_path / "other" / "ca-key.pem").read_bytes())
    assert other.cert != ca.cert
    with pytest.raises(CAError, match="does not belong"):
        MeshCA.load(tmp_path / "ca")
    with pytest.raises(CAError, match="no mesh CA"):
        MeshCA.load(tmp_path / "nowhere")


def test_renewal_after_rotation_writes_only_the_bundle_first(tmp_path: Path) -> None:
    ca = MeshCA.load_or_create(tmp_path / "ca", TD)
    ident = spiffe_id(TD, "service", "a")
    write_sidecar_certs(ca, ident, tmp_path / "a")
    cert_before = (tmp_path / "a" / "cert.pem").read_bytes()
    rotated = ca.rotate()
    assert needs_renewal(tmp_path / "a", rotated)
    assert renew_if_due(rotated, ident, tmp_path / "a") is True
    # the old certificate is still trusted: it stays; the bundle now holds both roots
    assert (tmp_path / "a" / "cert.pem").read_bytes() == cert_before
    assert (tmp_path / "a" / "ca.pem").read_bytes() == rotated.bundle_pem
    assert renew_if_due(rotated, ident, tmp_path / "a") is False


def forge_with_workload_key(thief: TlsFiles, identity: str, out_dir: Path) -> TlsFiles:
    """A certificate for `identity` signed with a sidecar's (stolen) key, chained to its cert."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    thief_cert = x509.load_pem_x509_certificate(Path(thief.cert_file).read_bytes())
    thief_key = serialization.load_pem_private_key(Path(thief.key_file).read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(thief_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]),
                       critical=False)
        .sign(thief_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    out_dir.mkdir(parents=True)
    (out_dir / "cert.pem").write_bytes(
        forged.public_bytes(serialization.Encoding.PEM) + Path(thief.cert_file).read_bytes()
    )
    (out_dir / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    return TlsFiles(cert_file=str(out_dir / "cert.pem"), key_file=str(out_dir / "key.pem"),
                    ca_file=thief.ca_file)


def test_a_workload_key_cannot_mint_identities(tmp_path: Path) -> None:
    """A stolen sidecar key signs a certificate for another identity: not a CA, refused."""
    ca = MeshCA.load_or_create(tmp_path / "ca", TD)
    server = write_sidecar_certs(ca, spiffe_id(TD, "service", "reviews"), tmp_path / "s")
    thief = write_sidecar_certs(ca, spiffe_id(TD, "service", "a"), tmp_path / "a")
    files = forge_with_workload_key(thief, spiffe_id(TD, "service", "admin"), tmp_path / "f")
    # The server's verification rejects the chain: a workload certificate is no CA.
    with pytest.raises(ssl.SSLError, match="UNKNOWN_CA"):
        _handshake(server, files, expect=spiffe_id(TD, "service", "reviews"))


def test_bad_trust_domain_is_a_ca_error(tmp_path: Path) -> None:
    with pytest.raises(CAError, match="trust domain"):
        MeshCA.load_or_create(tmp_path / "ca", "a..b")
