"""The mesh certificate authority: one self-signed root per trust domain, kept in the state dir.

Layout of `ca_dir` (0700, never under `mesh.d/`, never in compiled output or git):
  ca.pem      the current root certificate (signs every new workload certificate)
  ca-key.pem  its private key, EC P-256, PKCS#8, mode 0600
  bundle.pem  the trust bundle: the current root and, after a rotation, the previous one

Rotation makes a new root and keeps the previous root in the bundle, so certificates issued
by either verify everywhere while workloads are re-issued; `retire_previous()` ends the
overlap. The previous root's key is deleted at rotation: nothing signs with it again.

Workload certificates (X.509-SVIDs) carry the SPIFFE ID as URI SAN and its DNS mirror (see
`meshctl.spiffe`), are valid for both TLS server and client auth, and are short-lived
(24 hours by default): a runtime renews them before expiry with `meshctl.identity.renew`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshctl import spiffe
from meshctl.errors import UsageError
from meshctl.fsio import PUBLIC_FILE, write_atomic
from meshctl.identity.files import PRIVATE_FILE, ensure_private_dir, locked

DEFAULT_CA_VALIDITY = dt.timedelta(days=365)
DEFAULT_TTL = dt.timedelta(hours=24)
CLOCK_SKEW = dt.timedelta(minutes=5)  # certificates start a little in the past

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
BUNDLE = "bundle.pem"


class CAError(UsageError):
    """The CA cannot be created, loaded or used (exit 2: an environment problem)."""


@dataclass(frozen=True)
class IssuedCert:
    """A workload certificate and its key, PEM encoded. `key_pem` is secret."""

    spiffe_id: str
    cert_pem: bytes
    key_pem: bytes
    not_after: dt.datetime
    serial: int


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, as colon-separated hex (what `openssl x509` prints)."""
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def trust_domain_of(cert: x509.Certificate) -> str | None:
    """The trust domain a root certificate was made for (its `spiffe://<domain>` URI SAN)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in sans.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith("spiffe://"):
            return uri[len("spiffe://") :].rstrip("/")
    return None


def _make_root(
    trust_domain: str, validity: dt.timedelta
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    now = _now()
    # A distinct subject per root keeps chain building unambiguous while two roots are trusted.
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshctl"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"meshctl root {now:%Y%m%dT%H%M%S.%f}"),
    ])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]),
            critical=False,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _checked_domain(trust_domain: str) -> str:
    try:
        return spiffe.check_trust_domain(trust_domain)
    except spiffe.SpiffeIdError as exc:
        raise CAError(str(exc)) from None


class MeshCA:
    """A loaded mesh CA. Instances are immutable; `rotate` returns the new CA."""

    def __init__(
        self,
        ca_dir: Path,
        cert: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        bundle: tuple[x509.Certificate, ...],
    ) -> None:
        domain = trust_domain_of(cert)
        if domain is None:
            raise CAError(f"{ca_dir / CA_CERT} is not a meshctl CA (no spiffe:// URI SAN)")
        self.ca_dir = ca_dir
        self.trust_domain = domain
        self.cert = cert
        self._key = key
        self.bundle = bundle

    # --- creating and loading --------------------------------------------------------------

    @staticmethod
    def exists(ca_dir: Path) -> bool:
        return (ca_dir / CA_CERT).is_file() and (ca_dir / CA_KEY).is_file()

    @classmethod
    def load_or_create(
        cls, ca_dir: Path, trust_domain: str, *, validity: dt.timedelta = DEFAULT_CA_VALIDITY
    ) -> MeshCA:
        """Load the CA in `ca_dir`, creating it on first use (safe against concurrent callers).

        Raises CAError when the existing CA belongs to another trust domain: its identities
        would not match the policy (rotate with the new trust domain to switch).
        """
        _checked_domain(trust_domain)
        ensure_private_dir(ca_dir)
        with locked(ca_dir):
            if not cls.exists(ca_dir):
                cert, key = _make_root(trust_domain, validity)
                cls._store(ca_dir, cert, key, (cert,))
            ca = cls.load(ca_dir)
        if ca.trust_domain != trust_domain:
            raise CAError(
                f"the mesh CA in {ca_dir} is for trust domain {ca.trust_domain!r}, "
                f"the policy uses {trust_domain!r}; run `meshctl ca rotate --trust-domain "
                f"{trust_domain}` to switch"
            )
        return ca

    @classmethod
    def load(cls, ca_dir: Path) -> MeshCA:
        """Load an existing CA; CAError names the missing or damaged file."""
        if not cls.exists(ca_dir):
            raise CAError(
                f"no mesh CA in {ca_dir} (`meshctl ca init` or `meshctl up` creates it)"
            )
        try:
            cert = x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())
            key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), None)
        except (ValueError, TypeError, OSError) as exc:
            raise CAError(f"cannot read the mesh CA in {ca_dir}: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CAError(f"{ca_dir / CA_KEY} is not an EC private key")
        if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
            raise CAError(f"{ca_dir / CA_KEY} does not belong to {ca_dir / CA_CERT}")
        bundle_path = ca_dir / BUNDLE
        try:
            bundle = tuple(x509.load_pem_x509_certificates(bundle_path.read_bytes()))
        except (ValueError, OSError):
            bundle = (cert,)  # a lost bundle is rebuilt from the current root
        if cert not in bundle:
            bundle = (cert, *bundle)
        return cls(ca_dir, cert, key, bundle)

    @staticmethod
    def _store(
        ca_dir: Path,
        cert: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        bundle: tuple[x509.Certificate, ...],
    ) -> None:
        # Key first: a crash between writes leaves a key without its cert, which `load` reports.
        write_atomic(ca_dir / CA_KEY, _key_pem(key), PRIVATE_FILE)
        write_atomic(ca_dir / CA_CERT, _cert_pem(cert), PUBLIC_FILE)
        write_atomic(ca_dir / BUNDLE, b"".join(_cert_pem(c) for c in bundle), PUBLIC_FILE)

    # --- rotation --------------------------------------------------------------------------

    def rotate(
        self, *, trust_domain: str | None = None, validity: dt.timedelta = DEFAULT_CA_VALIDITY
    ) -> MeshCA:
        """Make a new root; the bundle trusts it and the current root until `retire_previous`."""
        domain = _checked_domain(trust_domain or self.trust_domain)
        with locked(self.ca_dir):
            cert, key = _make_root(domain, validity)
            now = _now()
            kept = tuple(c for c in (self.cert,) if c.not_valid_after_utc > now)
            self._store(self.ca_dir, cert, key, (cert, *kept))
            return MeshCA.load(self.ca_dir)

    def retire_previous(self) -> MeshCA:
        """Trust only the current root from now on (after every workload was re-issued)."""
        with locked(self.ca_dir):
            write_atomic(self.ca_dir / BUNDLE, _cert_pem(self.cert), PUBLIC_FILE)
            return MeshCA.load(self.ca_dir)

    # --- issuing ---------------------------------------------------------------------------

    @property
    def bundle_pem(self) -> bytes:
        return b"".join(_cert_pem(c) for c in self.bundle)

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    def issue(
        self, spiffe_id: str, ttl: dt.timedelta = DEFAULT_TTL, *, now: dt.datetime | None = None
    ) -> IssuedCert:
        """A fresh key and a certificate for `spiffe_id`, valid for `ttl` (capped at the CA's end).

        The ID must be in this CA's trust domain: a CA vouches for its own domain only.
        `now` backdates the certificate (tests use it to make expired certificates).
        """
        try:
            ident = spiffe.parse(spiffe_id)
        except spiffe.SpiffeIdError as exc:
            raise CAError(str(exc)) from None
        if ident.trust_domain != self.trust_domain:
            raise CAError(
                f"{spiffe_id} is outside this CA's trust domain {self.trust_domain!r}"
            )
        if ttl <= dt.timedelta(0):
            raise CAError(f"certificate lifetime must be positive, got {ttl}")
        now = now or _now()
        not_after = min(now + ttl, self.not_after)
        key = _new_key()
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshctl"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ident.kind),
            ]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=True, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([
                    x509.UniformResourceIdentifier(str(ident)),
                    x509.DNSName(ident.dns_name),
                ]),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        return IssuedCert(str(ident), _cert_pem(cert), _key_pem(key), not_after, serial)

    def verifies(self, cert_pem: bytes) -> bool:
        """True when a certificate was signed by a root in this CA's trust bundle."""
        return any(_signed_by(cert_pem, root) for root in self.bundle)

    def issued_by_current(self, cert_pem: bytes) -> bool:
        """True when the current root signed the certificate (it survives `retire_previous`)."""
        return _signed_by(cert_pem, self.cert)


def _signed_by(cert_pem: bytes, root: x509.Certificate) -> bool:
    try:
        x509.load_pem_x509_certificate(cert_pem).verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
