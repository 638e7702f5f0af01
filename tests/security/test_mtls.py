"""Mutual TLS and access policy between real sidecar processes, with real certificates."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from meshctl.cli.main import main
from meshctl.contract import TlsFiles
from meshctl.identity import (
    MeshCA,
    dns_name,
    write_sidecar_certs,
)
from tests.security.conftest import Mesh, client_context, tls_request
from tests.security.test_ca import forge_with_workload_key
from tests.support.configs import TRUST_DOMAIN, identity
from tests.support.procs import http_get

HANDSHAKE_REFUSED = (ssl.SSLError, ConnectionError, http.client.HTTPException, TimeoutError)


def via(
    sidecar_proxy: str, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A request as the app beside a sidecar makes it: through its outbound proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": sidecar_proxy}))
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def app_count(mesh: Mesh) -> int:
    return int(mesh.app.stats()["requests"])


def counter(sidecar_metrics: str, name: str) -> float:
    total = 0.0
    for line in sidecar_metrics.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def inbound_log(mesh: Mesh, path: str) -> dict[str, object]:
    entries = [e for e in mesh.reviews.access_log() if e.get("path") == path]
    assert entries, f"no access log entry for {path}"
    return entries[-1]


# --- who gets in -------------------------------------------------------------------------


def test_permitted_caller_succeeds_and_app_sees_its_identity(mesh: Mesh) -> None:
    mesh.set_reviews("strict")
    status, headers, body = via(mesh.productpage.outbound_proxy, "http://reviews/hello")
    assert status == 200, body
    seen = json.loads(body)["headers"]
    xfcc = {k.lower(): v for k, v in seen.items()}["x-forwarded-client-cert"]
    assert xfcc == f"By={identity('reviews')};URI={identity('productpage')}"
    entry = inbound_log(mesh, "/hello")
    assert entry["downstream_peer_uri_san"] == identity("productpage")
    assert entry["access_policy"] == "callers"
    assert entry["connection_security_policy"] == "mutual_tls"
    expiry = counter(mesh.reviews.metrics(), "meshctl_certificate_expiry_timestamp_seconds")
    assert time.time() < expiry < time.time() + 25 * 3600  # a short-lived certificate


def test_gateway_calls_in_with_its_own_identity(mesh: Mesh) -> None:
    mesh.set_reviews("strict")
    status, body = http_get(f"{mesh.gateway.gateway_url}/shop/item")
    assert status == 200, body
    seen = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
    assert seen["x-forwarded-client-cert"].endswith(f"URI={identity('public', 'gateway')}")
    assert inbound_log(mesh, "/shop/item")["access_policy"] == "edge"
    # the gateway's identity is admitted for /shop* only
    status, _ = http_get(f"{mesh.gateway.gateway_url}/other")
    assert status == 403


def test_caller_the_policy_does_not_allow_gets_403_rbac(mesh: Mesh) -> None:
    mesh.set_reviews("strict")
    before = app_count(mesh)
    status, headers, _ = via(mesh.ratings.outbound_proxy, "http://reviews/secret")
    assert status == 403 and headers["x-mesh-response-flags"] == "RBAC"
    entry = inbound_log(mesh, "/secret")
    assert entry["downstream_peer_uri_san"] == identity("ratings") and entry["response_flags"] == "RBAC"
    # a deny policy wins over the allow policy, and the log names it
    status, headers, _ = via(mesh.productpage.outbound_proxy, "http://reviews/admin/users")
    assert status == 403 and headers["x-mesh-response-flags"] == "RBAC"
    assert inbound_log(mesh, "/admin/users")["access_policy"] == "no-admin"
    assert app_count(mesh) == before
    denied = [
        line for line in mesh.reviews.metrics().splitlines()
        if line.startswith("istio_requests_total{")
        and 'response_code="403"' in line and 'response_flags="RBAC"' in line
        and 'source_app="ratings"' in line
    ]
    assert denied and float(denied[0].rsplit(" ", 1)[1]) >= 1, denied


def test_outbound_refuses_a_server_with_the_wrong_identity(mesh: Mesh) -> None:
    # `details` resolves to the reviews sidecar, whose certificate says reviews: no request.
    before = app_count(mesh)
    status, headers, _ = via(mesh.productpage.outbound_proxy, "http://details/x")
    assert status >= 500 and "UF" in headers["x-mesh-response-flags"]
    assert app_count(mesh) == before


def test_static_endpoint_without_sidecar_is_called_plain(mesh: Mesh) -> None:
    status, _, body = via(mesh.productpage.outbound_proxy, "http://legacy/static")
    assert status == 200, body
    seen = {k.lower() for k in json.loads(body)["headers"]}
    assert "x-forwarded-client-cert" not in seen


@pytest.mark.parametrize("case", ["no-certificate", "other-ca", "expired", "workload-signed"])
def test_bad_client_certificates_are_refused_in_the_handshake(
    mesh: Mesh, tmp_path: Path, case: str
) -> None:
    mesh.set_reviews("strict")
    ca_file = mesh.tls["reviews"].ca_file
    if case == "no-certificate":
        files = None
    elif case == "workload-signed":
        # signed with productpage's own key (as if stolen), claiming another identity
        files = forge_with_workload_key(mesh.tls["productpage"], identity("admin"), tmp_path / "f")
    elif case == "other-ca":
        other = MeshCA.load_or_create(tmp_path / "other-ca", TRUST_DOMAIN)
        files = write_sidecar_certs(other, identity("productpage"), tmp_path / "c")
    else:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        issued = mesh.ca.issue(identity("productpage"), dt.timedelta(hours=1), now=past)
        (tmp_path / "c").mkdir()
        (tmp_path / "c" / "cert.pem").write_bytes(issued.cert_pem)
        (tmp_path / "c" / "key.pem").write_bytes(issued.key_pem)
        files = TlsFiles(
            cert_file=str(tmp_path / "c" / "cert.pem"),
            key_file=str(tmp_path / "c" / "key.pem"),
            ca_file=ca_file,
        )
    failures_before = counter(mesh.reviews.metrics(), "meshctl_tls_handshake_failures_total")
    before = app_count(mesh)
    with pytest.raises(HANDSHAKE_REFUSED):
        tls_request(mesh.reviews.inbound_address, client_context(files, ca_file), "/x")
    assert app_count(mesh) == before
    deadline = time.monotonic() + 5
    while counter(mesh.reviews.metrics(), "meshctl_tls_handshake_failures_total") <= failures_before:
        assert time.monotonic() < deadline, "handshake failure not counted"
        time.sleep(0.05)
    refused = [e for e in mesh.reviews.access_log() if e.get("event") == "tls_handshake_failed"]
    expected = {
        "no-certificate": "peer did not return a certificate",
        "other-ca": "unable to get local issuer certificate",
        "expired": "certificate has expired",
        "workload-signed": "invalid CA certificate",
    }[case]
    assert expected in str(refused[-1]["reason"]), refused[-1]


def test_valid_client_certificate_passes_the_handshake(mesh: Mesh) -> None:
    mesh.set_reviews("strict")
    ctx = client_context(mesh.tls["productpage"], mesh.tls["productpage"].ca_file)
    status, _, body = tls_request(mesh.reviews.inbound_address, ctx, "/direct")
    assert status == 200, body


def test_plain_http_is_refused_under_strict(mesh: Mesh) -> None:
    mesh.set_reviews("strict")
    before = app_count(mesh)
    status, body = http_get(f"http://{mesh.reviews.inbound_address}/public/page")
    assert status == 403 and b"RBAC" in body
    assert app_count(mesh) == before


def test_permissive_accepts_plain_http_and_labels_both(mesh: Mesh) -> None:
    mesh.set_reviews("permissive")
    try:
        status, body = http_get(f"http://{mesh.reviews.inbound_address}/public/plain")
        assert status == 200, body
        assert inbound_log(mesh, "/public/plain")["connection_security_policy"] == "none"
        # no identity: rules with `from` never match a plain request
        status, _ = http_get(f"http://{mesh.reviews.inbound_address}/private")
        assert status == 403
        # TLS without a client certificate: accepted, no identity
        ctx = client_context(None, mesh.tls["reviews"].ca_file)
        status, _, _ = tls_request(mesh.reviews.inbound_address, ctx, "/public/anon-tls")
        assert status == 200
        assert inbound_log(mesh, "/public/anon-tls")["downstream_peer_uri_san"] is None
        status, _, _ = via(mesh.productpage.outbound_proxy, "http://reviews/public/mtls")
        assert status == 200
        assert inbound_log(mesh, "/public/mtls")["connection_security_policy"] == "mutual_tls"
        metrics = mesh.reviews.metrics()
        assert 'connection_security_policy="none"' in metrics
        assert 'connection_security_policy="mutual_tls"' in metrics
    finally:
        mesh.set_reviews("strict")


def test_streamed_request_goes_over_mtls_too(mesh: Mesh) -> None:
    """Large bodies ride mitmproxy's own upstream path; it presents and checks certificates."""
    mesh.set_reviews("strict")
    body = b"x" * (2 * 1024 * 1024)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": mesh.productpage.outbound_proxy})
    )
    req = urllib.request.Request("http://reviews/upload", data=body, method="POST")
    with opener.open(req, timeout=30) as resp:
        seen = json.loads(resp.read())
    assert seen["body_len"] == len(body)
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-forwarded-client-cert"].endswith(f"URI={identity('productpage')}")
    assert inbound_log(mesh, "/upload")["connection_security_policy"] == "mutual_tls"


def test_disabled_server_still_serves_callers_on_mtls_during_a_rollout(mesh: Mesh) -> None:
    mesh.set_reviews("disabled")
    try:
        status, body = http_get(f"http://{mesh.reviews.inbound_address}/public/plain-disabled")
        assert status == 200, body
        # productpage still runs strict (not updated yet): its mTLS call is served
        status, _, body = via(mesh.productpage.outbound_proxy, "http://reviews/mid-rollout")
        assert status == 200, body
        assert inbound_log(mesh, "/mid-rollout")["downstream_peer_uri_san"] == identity("productpage")
    finally:
        mesh.set_reviews("strict")


# --- the identity header ------------------------------------------------------------------


def test_forged_client_cert_header_never_reaches_the_destination(mesh: Mesh) -> None:
    forged = {"X-Forwarded-Client-Cert": f"URI={identity('admin')}"}
    mesh.set_reviews("strict")
    status, _, body = via(mesh.productpage.outbound_proxy, "http://reviews/forge", forged)
    assert status == 200
    seen = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
    assert seen["x-forwarded-client-cert"] == (
        f"By={identity('reviews')};URI={identity('productpage')}"
    )
    mesh.set_reviews("permissive")
    try:
        req = urllib.request.Request(
            f"http://{mesh.reviews.inbound_address}/public/forge", headers=forged
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            seen = {k.lower() for k in json.loads(resp.read())["headers"]}
        assert "x-forwarded-client-cert" not in seen
    finally:
        mesh.set_reviews("strict")


# --- rotation ---------------------------------------------------------------------------


class Traffic(threading.Thread):
    """Sequential requests through productpage's sidecar until stopped; counts failures."""

    def __init__(self, mesh: Mesh) -> None:
        super().__init__(daemon=True)
        self.mesh = mesh
        self.stop = threading.Event()
        self.ok = 0
        self.failed: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status, headers, _ = via(self.mesh.productpage.outbound_proxy, "http://reviews/r")
            except OSError as exc:
                self.failed.append(repr(exc))
                continue
            if status == 200:
                self.ok += 1
            else:
                self.failed.append(f"{status} {headers.get('x-mesh-response-flags')}")


def server_cert_issuer(mesh: Mesh) -> bytes:
    ctx = client_context(mesh.tls["productpage"], mesh.tls["productpage"].ca_file)
    host, _, port = mesh.reviews.inbound_address.rpartition(":")
    with ctx.wrap_socket(
        socket.create_connection((host, int(port)), timeout=10),
        server_hostname=dns_name(identity("reviews")),
    ) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return ssl.DER_cert_to_PEM_cert(der).encode()


def test_rotating_the_ca_keeps_traffic_flowing(mesh: Mesh) -> None:
    """`meshctl ca rotate`, then `--finish`, under continuous traffic: no failure, no restart."""
    mesh.set_reviews("strict")
    state = str(mesh.root / "state")
    pids = [sc.proc.pid for sc in mesh.sidecars]
    old_root = mesh.ca.cert
    old_client = write_sidecar_certs(mesh.ca, identity("productpage"), mesh.root / "old-client")
    traffic = Traffic(mesh)
    traffic.start()
    try:
        time.sleep(0.5)
        assert main(["ca", "rotate", "--state", state]) == 0  # bundles, 2 s, then certificates
        rotated = MeshCA.load(mesh.root / "state" / "ca")
        assert rotated.cert != old_root and len(rotated.bundle) == 2
        deadline = time.monotonic() + 15
        while not rotated.issued_by_current(server_cert_issuer(mesh)):
            assert time.monotonic() < deadline, "reviews did not pick up its new certificate"
            time.sleep(0.2)
        assert main(["ca", "rotate", "--finish", "--state", state]) == 0
        mesh.ca = MeshCA.load(mesh.root / "state" / "ca")
        assert len(mesh.ca.bundle) == 1
        time.sleep(2.5)  # every sidecar reloads its bundle within ~1 s of traffic
        ok_after = traffic.ok
        time.sleep(1.0)
        assert traffic.ok > ok_after, "traffic stopped after the old root was retired"
    finally:
        traffic.stop.set()
        traffic.join(15)
    assert traffic.failed == [], traffic.failed[:5]
    assert traffic.ok > 20
    assert [sc.proc.pid for sc in mesh.sidecars] == pids  # no restart
    assert f"certificate for {identity('reviews')} loaded" in mesh.reviews.stderr()
    assert all(sc.proc.poll() is None for sc in mesh.sidecars)
    # a client still holding a certificate from the retired root is refused
    with pytest.raises(HANDSHAKE_REFUSED):
        tls_request(
            mesh.reviews.inbound_address, client_context(old_client, mesh.tls["reviews"].ca_file)
        )


def test_sidecar_logs_hold_no_private_key(mesh: Mesh) -> None:
    from tests.security.test_key_leak import key_bodies, scan

    bodies = key_bodies(mesh.root / "state")
    assert len(bodies) >= 4  # the CA key and three sidecar keys
    mesh.set_reviews("strict")
    with pytest.raises(HANDSHAKE_REFUSED):  # a refused handshake of its own to log
        tls_request(mesh.reviews.inbound_address, client_context(None, mesh.tls["reviews"].ca_file), "/x")
    deadline = time.monotonic() + 5
    while not any(e.get("event") == "tls_handshake_failed" for e in mesh.reviews.access_log()):
        assert time.monotonic() < deadline, "the refused handshake was not logged"
        time.sleep(0.05)
    logs = "".join(sc.log_path.read_text() + sc.stderr() for sc in mesh.sidecars)
    assert '"tls_handshake_failed"' in logs  # the logs saw refused handshakes, and requests
    assert scan(logs, bodies) == []
