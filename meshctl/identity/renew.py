"""Writing a sidecar's certificate files, and renewing them before they expire.

The runtime owns *when* (it schedules `renew_if_due` for every sidecar, e.g. once a minute);
this module owns *what*: the files a sidecar reads (`TlsFiles` in its RuntimeBindings), written
atomically. A running sidecar notices rewritten files and uses them for new connections
without a restart (`proxy_addon/tls.py`).

Write order matters during a CA rotation: every sidecar must trust the new root before any
sidecar presents a certificate signed by it. `reissue_all` writes all bundles first, then the
certificates.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509

from meshctl.contract import TlsFiles
from meshctl.fsio import PUBLIC_FILE, write_atomic
from meshctl.identity.ca import DEFAULT_TTL, MeshCA
from meshctl.identity.files import PRIVATE_FILE, ensure_private_dir

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
CA_FILE = "ca.pem"

# Renew once this fraction of a certificate's lifetime has passed (SPIRE renews at 1/2).
RENEW_AFTER_FRACTION = 0.5


def tls_files(out_dir: Path) -> TlsFiles:
    """The paths a sidecar's bindings name for the certificates in `out_dir`."""
    out_dir = out_dir.resolve()
    return TlsFiles(
        cert_file=str(out_dir / CERT_FILE),
        key_file=str(out_dir / KEY_FILE),
        ca_file=str(out_dir / CA_FILE),
    )


def write_trust_bundle(ca: MeshCA, out_dir: Path) -> None:
    ensure_private_dir(out_dir)
    write_atomic(out_dir / CA_FILE, ca.bundle_pem, PUBLIC_FILE)


def write_sidecar_certs(
    ca: MeshCA, spiffe_id: str, out_dir: Path, ttl: dt.timedelta = DEFAULT_TTL
) -> TlsFiles:
    """Issue a certificate for `spiffe_id` and write ca.pem, key.pem (0600), cert.pem.

    The key is written before the certificate: a sidecar that reads between the two writes
    finds a key that does not match and keeps its current pair until the next look.
    """
    issued = ca.issue(spiffe_id, ttl)
    write_trust_bundle(ca, out_dir)
    write_atomic(out_dir / KEY_FILE, issued.key_pem, PRIVATE_FILE)
    write_atomic(out_dir / CERT_FILE, issued.cert_pem, PUBLIC_FILE)
    return tls_files(out_dir)


def _cert_due(out_dir: Path, ca: MeshCA, now: dt.datetime) -> bool:
    try:
        cert_pem = (out_dir / CERT_FILE).read_bytes()
        cert = x509.load_pem_x509_certificate(cert_pem)
    except (OSError, ValueError):
        return True
    if not ca.verifies(cert_pem):
        return True
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= start + (end - start) * RENEW_AFTER_FRACTION


def _bundle_stale(out_dir: Path, ca: MeshCA) -> bool:
    try:
        return (out_dir / CA_FILE).read_bytes() != ca.bundle_pem
    except OSError:
        return True


def needs_renewal(out_dir: Path, ca: MeshCA, now: dt.datetime | None = None) -> bool:
    """True when `renew_if_due` would write: the certificate is missing, unreadable, past half
    its lifetime or signed by no root `ca` trusts, or the bundle there is not the CA's bundle."""
    now = now or dt.datetime.now(dt.UTC)
    return _cert_due(out_dir, ca, now) or _bundle_stale(out_dir, ca)


def renew_if_due(
    ca: MeshCA, spiffe_id: str, out_dir: Path, ttl: dt.timedelta = DEFAULT_TTL
) -> bool:
    """Bring a sidecar's files up to date; True when it wrote something.

    A certificate that is still trusted keeps its place when only the bundle changed (a CA
    rotation began): then only the bundle is written, so that every sidecar trusts the new root
    before anyone presents a certificate signed by it.
    """
    if _cert_due(out_dir, ca, dt.datetime.now(dt.UTC)):
        write_sidecar_certs(ca, spiffe_id, out_dir, ttl)
        return True
    if _bundle_stale(out_dir, ca):
        write_trust_bundle(ca, out_dir)
        return True
    return False


def reissue_all(
    ca: MeshCA,
    targets: Iterable[tuple[str, Path]],
    ttl: dt.timedelta = DEFAULT_TTL,
    settle: float = 0.0,
) -> list[TlsFiles]:
    """Re-issue every sidecar's certificate (after `MeshCA.rotate`): bundles first, then certs.

    `targets` are (spiffe_id, out_dir) pairs. Running sidecars look at their files about once
    a second: with `settle` > 0 this waits that long between the two phases, so every sidecar
    trusts the new root before any presents a certificate signed by it.
    """
    pairs = list(targets)
    for _, out_dir in pairs:
        write_trust_bundle(ca, out_dir)
    if settle > 0 and pairs:
        time.sleep(settle)
    return [write_sidecar_certs(ca, ident, out_dir, ttl) for ident, out_dir in pairs]


def find_cert_dirs(root: Path) -> list[tuple[str, Path]]:
    """Every directory under `root` holding sidecar certificate files, with its SPIFFE ID.

    Lets `meshctl ca rotate` re-issue whatever a runtime wrote, wherever it keeps it.
    """
    found = []
    for cert_path in sorted(root.rglob(CERT_FILE)):
        directory = cert_path.parent
        if not (directory / KEY_FILE).is_file():
            continue
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (OSError, ValueError, x509.ExtensionNotFound):
            continue
        uris = [u for u in sans.get_values_for_type(x509.UniformResourceIdentifier)
                if u.startswith("spiffe://")]
        if len(uris) == 1:
            found.append((uris[0], directory))
    return found
