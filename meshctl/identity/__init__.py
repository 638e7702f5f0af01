"""Mesh identity: the CA, SPIFFE IDs, and the certificate files each sidecar reads.

Import the pieces from here; the submodules are an implementation detail.
"""

from __future__ import annotations

from meshctl.identity.ca import DEFAULT_TTL, CAError, IssuedCert, MeshCA, fingerprint
from meshctl.identity.renew import (
    find_cert_dirs,
    needs_renewal,
    reissue_all,
    renew_if_due,
    tls_files,
    write_sidecar_certs,
    write_trust_bundle,
)
from meshctl.spiffe import SpiffeIdError, dns_name, spiffe_id

__all__ = [
    "DEFAULT_TTL",
    "CAError",
    "IssuedCert",
    "MeshCA",
    "SpiffeIdError",
    "dns_name",
    "fingerprint",
    "find_cert_dirs",
    "needs_renewal",
    "reissue_all",
    "renew_if_due",
    "spiffe_id",
    "tls_files",
    "write_sidecar_certs",
    "write_trust_bundle",
]
