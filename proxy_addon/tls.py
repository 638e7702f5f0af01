"""Mutual TLS for a sidecar: the inbound verifying context, the outbound client context, reload.

Inbound: mitmproxy's `request_client_cert` asks for a client certificate and accepts any, so
the sidecar supplies its own pyOpenSSL context in the `tls_start_client` hook: it presents this
sidecar's certificate and lets OpenSSL verify the client's chain against the mesh trust bundle
(`VERIFY_PEER`, plus `VERIFY_FAIL_IF_NO_PEER_CERT` under strict). A handshake that fails never
becomes a flow; a flow whose client connection has `tls_established` carries a verified chain.

Outbound: an `ssl.SSLContext` with this sidecar's certificate and the mesh bundle. The server's
identity is checked inside the handshake by hostname verification against the DNS SAN that
mirrors the SPIFFE ID it must present (`server_hostname(identity)`), see meshctl.identity.

Reload: certificates are short-lived and rewritten by the runtime. `maybe_reload` looks at the
files at most once a second (a few `stat` calls) and builds new contexts when they changed; new
connections use them, established ones keep theirs. A pair that does not load (a key written
before its certificate) is skipped and retried at the next look; the last good pair stays.

Imports only the standard library, pyOpenSSL, cryptography and mitmproxy: a sidecar loads it.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from mitmproxy import connection, tls
from mitmproxy.addons.tlsconfig import AppData, alpn_select_callback
from OpenSSL import SSL

from meshctl.contract import TlsFiles
from meshctl.spiffe import SpiffeIdError, dns_name
from proxy_addon import patches

log = logging.getLogger(__name__)

RELOAD_INTERVAL_S = 1.0



class TlsError(Exception):
    """Certificate files that cannot be used: missing, unreadable, or key and cert do not match."""


@dataclass(frozen=True)
class LoadedTls:
    """One consistent generation of contexts, built from one set of files."""

    strict_server: SSL.Context  # client certificate required
    optional_server: SSL.Context  # client certificate verified when presented (permissive)
    client: ssl.SSLContext  # the pooled aiohttp client's calls to other sidecars
    stream_client: SSL.Context  # mitmproxy's own upstream connections (streamed requests)
    identity: str | None  # this sidecar's SPIFFE ID (URI SAN of its certificate)
    not_after: float  # expiry of this sidecar's certificate, Unix time


def _server_context(files: TlsFiles, require_cert: bool) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.use_certificate_chain_file(files.cert_file)
    ctx.use_privatekey_file(files.key_file)
    ctx.check_privatekey()
    ctx.load_verify_locations(files.ca_file)
    # OpenSSL's own chain verification (no callback that could accept everything).
    mode = SSL.VERIFY_PEER | (SSL.VERIFY_FAIL_IF_NO_PEER_CERT if require_cert else 0)
    ctx.set_verify(mode)
    ctx.set_verify_depth(2)
    ctx.set_alpn_select_callback(alpn_select_callback)
    # Session tickets/IDs stay off: a resumed session would skip verifying a renewed bundle.
    ctx.set_options(SSL.OP_NO_TICKET)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    return ctx


def _client_context(files: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(files.cert_file, files.key_file)
    ctx.load_verify_locations(files.ca_file)
    return ctx


def _stream_client_context(files: TlsFiles) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.use_certificate_chain_file(files.cert_file)
    ctx.use_privatekey_file(files.key_file)
    ctx.check_privatekey()
    ctx.load_verify_locations(files.ca_file)
    ctx.set_verify(SSL.VERIFY_PEER)
    return ctx


def _own_identity(cert_file: str) -> tuple[str | None, float]:
    with open(cert_file, "rb") as handle:
        cert = x509.load_pem_x509_certificate(handle.read())
    return identity_of(cert), cert.not_valid_after_utc.timestamp()


def identity_of(cert: x509.Certificate) -> str | None:
    """The one `spiffe://` URI SAN of a certificate, or None."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = [u for u in sans.get_values_for_type(x509.UniformResourceIdentifier)
            if u.startswith("spiffe://")]
    return uris[0] if len(uris) == 1 else None  # SPIFFE: exactly one URI SAN


Signature = tuple[tuple[int, int, int], ...]


def file_signature(paths: Sequence[str]) -> Signature:
    """Inode, mtime and size of each file (zeros for a missing one): certificate files are
    replaced by rename, so any new content changes it."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((0, 0, 0))
        else:
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


def signature(files: TlsFiles) -> Signature:
    return file_signature((files.cert_file, files.key_file, files.ca_file))


# The last contexts built, with the signature of their files: a new pair is checked
# (`proxy_addon.reload.check_pair`) and then installed, and both ask for the same files.
_last: tuple[TlsFiles, Signature, LoadedTls] | None = None


def load(files: TlsFiles) -> LoadedTls:
    """Build every context from the files (unless the last load was of the same, unchanged
    files); TlsError says which file is wrong."""
    global _last
    stamp = signature(files)  # before reading: a write during the read changes it for the next
    if _last is not None and _last[0] == files and _last[1] == stamp:
        return _last[2]
    try:
        identity, not_after = _own_identity(files.cert_file)
        loaded = LoadedTls(
            _server_context(files, require_cert=True),
            _server_context(files, require_cert=False),
            _client_context(files),
            _stream_client_context(files),
            identity,
            not_after,
        )
    except (OSError, ValueError, SSL.Error, ssl.SSLError) as exc:
        raise TlsError(f"cannot use the certificate files {files.cert_file}: {exc}") from None
    _last = (files, stamp, loaded)
    return loaded


class SidecarTls:
    """The sidecar's current TLS contexts, reloaded when its certificate files change."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._signature = signature(files)
        self.current = load(files)
        self._checked = time.monotonic()
        self.reloads = 0
        self.reload_failures = 0
        # client connection id -> upstream "host:port" -> SPIFFE ID it must present, for
        # streamed requests (mitmproxy opens that connection; see MeshTls.tls_start_server).
        self.expected: dict[str, dict[str, str]] = {}

    def expect(self, client_id: str, address: str, identity: str) -> None:
        self.expected.setdefault(client_id, {})[address] = identity

    def maybe_reload(self, now: float | None = None) -> bool:
        """Rebuild the contexts when the files changed (checked at most once a second)."""
        now = time.monotonic() if now is None else now
        if now - self._checked < RELOAD_INTERVAL_S:
            return False
        self._checked = now
        stamp = signature(self.files)
        if stamp == self._signature:
            return False
        try:
            fresh = load(self.files)
        except TlsError as exc:
            # Keep the signature unchanged so the next look tries again.
            self.reload_failures += 1
            log.warning("keeping the current certificate: %s", exc)
            return False
        self._signature = stamp
        self.current = fresh
        self.reloads += 1
        # A lifecycle line like "revision applied": operators see renewals in the sidecar log.
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(fresh.not_after))
        print(f"meshctl sidecar: certificate for {fresh.identity} loaded, valid until {until}",
              file=sys.stderr, flush=True)
        return True

    def start_inbound(self, data: tls.TlsData, require_client_cert: bool, http2: bool) -> None:
        """Set the verifying server-side connection for `tls_start_client`."""
        self.maybe_reload()
        loaded = self.current
        ctx = loaded.strict_server if require_client_cert else loaded.optional_server
        conn = SSL.Connection(ctx)
        conn.set_app_data(AppData(client_alpn=None, server_alpn=None, http2=http2))
        conn.set_accept_state()
        data.ssl_conn = conn

    def client_context(self) -> ssl.SSLContext:
        self.maybe_reload()
        return self.current.client

    def start_upstream(self, data: tls.TlsData, identity: str, h2: bool = False) -> None:
        """Set the client-side connection for `tls_start_server` (mitmproxy's streaming path)."""
        self.maybe_reload()
        conn = SSL.Connection(self.current.stream_client)
        hostname = server_hostname(identity).encode("ascii")
        conn.set_tlsext_host_name(hostname)
        patches.verify_upstream_host(conn, hostname)  # pyOpenSSL has no hostname check of its own
        # HTTP/2 when the client speaks it (gRPC needs it end to end: trailers, streams).
        conn.set_alpn_protos([b"h2", b"http/1.1"] if h2 else [b"http/1.1"])
        conn.set_connect_state()
        data.ssl_conn = conn


@functools.lru_cache(maxsize=1024)  # a destination's identity, on every call to it
def server_hostname(identity: str) -> str:
    """The name to verify an upstream sidecar against: the DNS mirror of its SPIFFE ID."""
    try:
        return dns_name(identity)
    except SpiffeIdError:
        # Not a mesh identity: a name no mesh certificate carries, so the handshake fails.
        return "invalid-identity.meshctl.invalid"


def peer_identity(client: connection.Client) -> str | None:
    """The verified SPIFFE ID of the client, or None (plain HTTP, or TLS without a cert).

    Trust comes from the handshake: only `start_inbound` contexts verify, so call this only
    for connections whose TLS this module set up.
    """
    if not client.tls_established or not client.certificate_list:
        return None
    return identity_of(client.certificate_list[0].to_cryptography())


def xfcc_value(own_identity: str | None, peer: str) -> str:
    """`x-forwarded-client-cert` as Envoy sets it: the proxy's identity and the caller's."""
    parts = [f"By={own_identity}"] if own_identity else []
    parts.append(f"URI={peer}")
    return ";".join(parts)


def tls_for(current: SidecarTls | None, files: TlsFiles | None) -> SidecarTls | None:
    """The TLS state for new bindings: kept when the files are the same, else loaded anew.

    Raises TlsError when new files cannot be used (the caller keeps its last good bindings).
    """
    if files is None:
        return None
    if current is not None and current.files == files:
        return current
    return SidecarTls(files)


@dataclass(frozen=True, slots=True)
class PeerTls:
    """How to reach one upstream sidecar: this sidecar's client context, the name to verify."""

    context: ssl.SSLContext
    server_hostname: str
    # External services (TLS origination): the Host they expect instead of the mesh name
    # `mesh_host` the app called; a rule that rewrote the Host keeps its own.
    host_header: str | None = None
    mesh_host: str | None = None


def upstream_tls(
    current: SidecarTls | None, mtls: str, identity: str, address: str, plaintext: tuple[str, ...]
) -> PeerTls | None:
    """mTLS settings for a call to `address` (a sidecar that must present `identity`).

    None means plain HTTP: mTLS disabled, no certificates bound, or an endpoint without a
    sidecar (the runtime lists those in `RuntimeBindings.plaintext_endpoints`).
    """
    if current is None or mtls == "disabled" or address in plaintext:
        return None
    return PeerTls(current.client_context(), server_hostname(identity))
