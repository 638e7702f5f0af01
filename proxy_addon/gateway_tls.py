"""HTTPS on gateway listeners: the certificate chosen by SNI, reloaded when its files change.

mitmproxy parses the ClientHello (so `client.sni` is known) before `tls_start_client`; there
this addon sets a pyOpenSSL connection with the certificate whose DNS names cover the SNI (an
exact name first, then a `*.` wildcard), or the listener's first certificate when none does —
the request is then refused with 404 NR by host matching, as Envoy does with a default chain.
Files are looked at once a second at most (a few `stat` calls); a renewed pair is used for new
connections without a restart, and a pair that does not load (a key written before its
certificate) keeps the last good one until the next look.

ALPN: HTTP/1.1 for a client that offers it (browsers, curl: the gateway's HTTP path), h2 for
one that offers only h2 (gRPC clients do), so gRPC reaches mesh services over HTTPS listeners.

A plain-HTTP gateway listener that receives a TLS ClientHello gets a context without any
certificate, so the handshake fails instead of mitmproxy minting a certificate of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from mitmproxy import tls
from mitmproxy.addons.tlsconfig import AppData
from mitmproxy.proxy.layers.tls import HTTP1_ALPNS
from OpenSSL import SSL

from meshctl.contract import CompiledCertificate, GatewayListener
from meshctl.decision.hosts import host_matches
from proxy_addon.tls import file_signature

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0
H2 = b"h2"


class CertificateError(Exception):
    pass


def _names(cert_file: str) -> tuple[str, ...]:
    with open(cert_file, "rb") as handle:
        cert = x509.load_pem_x509_certificate(handle.read())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(name.lower() for name in sans.get_values_for_type(x509.DNSName))


def server_context(files: CompiledCertificate) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.use_certificate_chain_file(files.cert_file)
    ctx.use_privatekey_file(files.key_file)
    ctx.check_privatekey()
    ctx.set_alpn_select_callback(select_alpn)
    return ctx


def select_alpn(conn: SSL.Connection, options: list[bytes]) -> Any:
    for alpn in options:  # the client's order of preference
        if alpn in HTTP1_ALPNS:
            return alpn
    return H2 if H2 in options else SSL.NO_OVERLAPPING_PROTOCOLS


@dataclass
class LoadedCertificate:
    files: CompiledCertificate
    context: SSL.Context | None = None
    names: tuple[str, ...] = ()
    signature: tuple[tuple[int, int, int], ...] = ()
    loads: int = 0

    def refresh(self) -> None:
        signature = file_signature((self.files.cert_file, self.files.key_file))
        if signature == self.signature and self.context is not None:
            return
        try:
            context, names = server_context(self.files), _names(self.files.cert_file)
        except (OSError, ValueError, SSL.Error) as exc:
            log.warning("keeping the current certificate for %s: %s", self.files.cert_file, exc)
            return
        self.context, self.names, self.signature = context, names, signature
        self.loads += 1

    def covers(self, sni: str) -> int:
        """2: an exact name, 1: a wildcard, 0: neither."""
        if sni in self.names:
            return 2
        return 1 if any(n.startswith("*.") and host_matches(n, sni) for n in self.names) else 0


@dataclass
class CertificateStore:
    """The certificates of every https listener bound to one port."""

    certificates: list[LoadedCertificate]
    _checked: float = field(default=-1e9)

    def pick(self, sni: str | None, now: float | None = None) -> SSL.Context | None:
        now = time.monotonic() if now is None else now
        if now - self._checked >= CHECK_INTERVAL_S:
            self._checked = now
            for cert in self.certificates:
                cert.refresh()
        usable = [c for c in self.certificates if c.context is not None]
        if not usable:
            return None
        if sni:
            best = max(usable, key=lambda c: c.covers(sni.lower()))
            if best.covers(sni.lower()):
                return best.context
        return usable[0].context


def _no_certificate_context() -> SSL.Context:
    return SSL.Context(SSL.TLS_SERVER_METHOD)


class GatewayTls:
    """mitmproxy hooks: terminate TLS on https gateway listeners. Load before TlsConfig.

    `ports()` returns the current bound port -> listeners table (changes with each reload).
    """

    def __init__(self, ports: Callable[[], dict[int, tuple[GatewayListener, ...]]]) -> None:
        self._ports = ports
        self._stores: dict[tuple[CompiledCertificate, ...], CertificateStore] = {}
        self._loaded: dict[CompiledCertificate, LoadedCertificate] = {}

    def store(self, listeners: Sequence[GatewayListener]) -> CertificateStore | None:
        files = tuple(c for lst in listeners if lst.protocol == "https" for c in lst.certificates)
        if not files:
            return None
        store = self._stores.get(files)
        if store is None:
            # A certificate shared by several stores is loaded (and reloaded) once.
            certs = [self._loaded.setdefault(f, LoadedCertificate(f)) for f in files]
            store = self._stores[files] = CertificateStore(certs)
        return store

    def tls_start_client(self, data: tls.TlsData) -> None:
        if data.ssl_conn is not None:
            return
        client = data.context.client
        port = client.sockname[1] if client.sockname else None
        listeners = self._ports().get(port) if port is not None else None
        if listeners is None:
            return  # not a gateway listener
        store = self.store(listeners)
        context = store.pick(client.sni) if store is not None else None
        conn = SSL.Connection(context or _no_certificate_context())
        conn.set_app_data(AppData(client_alpn=None, server_alpn=None, http2=False))
        conn.set_accept_state()
        data.ssl_conn = conn
