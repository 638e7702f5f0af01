"""proxy_addon.tls without processes: loading, reload on change, identity helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshctl.contract import TlsFiles, dump_json
from meshctl.identity import MeshCA, spiffe_id, write_sidecar_certs
from proxy_addon import mtls, tls
from tests.support.configs import service_config
from tests.support.procs import REPO, bindings_for

TD = "shop.local"


@pytest.fixture()
def ca(tmp_path: Path) -> MeshCA:
    return MeshCA.load_or_create(tmp_path / "ca", TD)


def test_loads_identity_and_expiry(ca: MeshCA, tmp_path: Path) -> None:
    files = write_sidecar_certs(ca, spiffe_id(TD, "service", "reviews"), tmp_path / "s")
    loaded = tls.load(files)
    assert loaded.identity == "spiffe://shop.local/service/reviews"
    assert loaded.not_after > 0


def test_unusable_files_are_a_tls_error(ca: MeshCA, tmp_path: Path) -> None:
    files = write_sidecar_certs(ca, spiffe_id(TD, "service", "a"), tmp_path / "a")
    other = write_sidecar_certs(ca, spiffe_id(TD, "service", "b"), tmp_path / "b")
    mismatched = TlsFiles(cert_file=files.cert_file, key_file=other.key_file, ca_file=files.ca_file)
    with pytest.raises(tls.TlsError):
        tls.load(mismatched)
    with pytest.raises(tls.TlsError, match="cannot use"):
        tls.load(files.model_copy(update={"ca_file": str(tmp_path / "missing.pem")}))


def test_reload_picks_up_new_files_and_skips_a_half_written_pair(
    ca: MeshCA, tmp_path: Path
) -> None:
    ident = spiffe_id(TD, "service", "reviews")
    files = write_sidecar_certs(ca, ident, tmp_path / "s")
    state = tls.SidecarTls(files)
    first = state.current
    assert state.maybe_reload() is False  # checked less than a second ago
    # a new key without its certificate yet: refused, the old pair stays
    issued = ca.issue(ident)
    Path(files.key_file).write_bytes(issued.key_pem)
    assert state.maybe_reload(now=1e12) is False
    assert state.current is first and state.reload_failures == 1
    Path(files.cert_file).write_bytes(issued.cert_pem)
    assert state.maybe_reload(now=2e12) is True
    assert state.current is not first and state.reloads == 1
    assert state.maybe_reload(now=3e12) is False  # unchanged files: nothing to do



def test_unchanged_files_are_built_once_and_a_replaced_file_anew(ca: MeshCA, tmp_path: Path) -> None:
    # A new pair is checked (reload.check_pair) and then installed: one build for both.
    ident = spiffe_id(TD, "service", "reviews")
    files = write_sidecar_certs(ca, ident, tmp_path / "s")
    checked = tls.load(files)
    assert tls.SidecarTls(files).current is checked
    # Renewal rewrites the files (temp file, rename): their signature changes, so does the build.
    renewed = write_sidecar_certs(ca, ident, tmp_path / "s")
    assert renewed == files
    fresh = tls.load(files)
    assert fresh is not checked
    assert fresh.not_after >= checked.not_after
    # A key that no longer matches its certificate is refused, not served from the last build.
    other = ca.issue(spiffe_id(TD, "service", "other"))
    Path(files.key_file).write_bytes(other.key_pem)
    with pytest.raises(tls.TlsError):
        tls.load(files)

def test_tls_for_keeps_state_for_the_same_files(ca: MeshCA, tmp_path: Path) -> None:
    files = write_sidecar_certs(ca, spiffe_id(TD, "service", "a"), tmp_path / "a")
    state = tls.tls_for(None, files)
    assert state is not None and tls.tls_for(state, files) is state
    assert tls.tls_for(state, None) is None


def test_upstream_tls_plaintext_and_disabled(ca: MeshCA, tmp_path: Path) -> None:
    files = write_sidecar_certs(ca, spiffe_id(TD, "service", "a"), tmp_path / "a")
    state = tls.SidecarTls(files)
    ident = spiffe_id(TD, "service", "reviews")
    peer = tls.upstream_tls(state, "strict", ident, "127.0.0.1:1", ())
    assert peer is not None and peer.server_hostname == "reviews.service.shop.local"
    assert tls.upstream_tls(state, "disabled", ident, "127.0.0.1:1", ()) is None
    assert tls.upstream_tls(state, "strict", ident, "127.0.0.1:1", ("127.0.0.1:1",)) is None
    assert tls.upstream_tls(None, "strict", ident, "127.0.0.1:1", ()) is None
    # a malformed identity gets a name no mesh certificate carries: the handshake fails
    assert tls.server_hostname("https://x").endswith(".invalid")


def test_xfcc_value() -> None:
    assert tls.xfcc_value("spiffe://d/service/b", "spiffe://d/service/a") == (
        "By=spiffe://d/service/b;URI=spiffe://d/service/a"
    )


@pytest.mark.parametrize("mtls", ["strict", "permissive"])
def test_sidecar_refuses_to_start_mtls_without_certificates(tmp_path: Path, mtls: str) -> None:
    config = service_config("reviews", mtls=mtls)
    bindings = bindings_for(outbound=False, app="127.0.0.1:9")
    (tmp_path / "config.json").write_text(dump_json(config))
    (tmp_path / "bindings.json").write_text(dump_json(bindings))
    proc = subprocess.run(
        [sys.executable, "-m", "proxy_addon", "--config", str(tmp_path / "config.json"),
         "--bindings", str(tmp_path / "bindings.json")],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2
    assert f"mtls is {mtls} but `tls` names no certificates" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_handshake_reason_keeps_openssls_words() -> None:
    error = (
        "The client may not trust the proxy's certificate for reviews.service.test.local "
        "(OpenSSL Error([('SSL routines', '', 'peer did not return a certificate')]))"
    )
    assert mtls.handshake_reason(error) == "peer did not return a certificate"
    assert mtls.handshake_reason("connection reset") == "connection reset"
    assert mtls.handshake_reason(
        "The client may not trust the proxy's certificate for x (Certificate verify failed: "
        "certificate has expired)"
    ) == "Certificate verify failed: certificate has expired"
