"""The mitmproxy hooks of mesh mTLS (`MeshTls`): which connections get the mesh's TLS contexts.

`tls_start_client` hands an inbound connection the verifying server context, `tls_start_server`
a streamed upstream connection to another sidecar the client context with its expected SPIFFE
ID; refused handshakes are counted and logged. The contexts themselves, their loading and
reload, and the identity helpers are `proxy_addon.tls`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from mitmproxy import connection, ctx, tls
from prometheus_client import CollectorRegistry, Counter, Gauge

from proxy_addon.tls import SidecarTls


class MeshTls:
    """mitmproxy hooks for mesh mTLS. Load it before mitmproxy's TlsConfig addon.

    `tls()` and `snapshot()` return the sidecar's current TLS state and policy; `roles` maps a
    listener's full spec to its role (only "inbound" listeners terminate mesh mTLS).
    """

    def __init__(
        self,
        tls_state: Callable[[], SidecarTls | None],
        snapshot: Callable[[], Any],
        roles: dict[str, str],
        registry: CollectorRegistry,
        access_log: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._tls = tls_state
        self._snapshot = snapshot
        self.roles = roles
        self._log = access_log
        self.failures = Counter(
            "meshctl_tls_handshake_failures",
            "Inbound TLS handshakes refused (no, untrusted or expired client certificate)",
            registry=registry,
        )
        self.expiry = Gauge(
            "meshctl_certificate_expiry_timestamp_seconds",
            "When this sidecar's certificate expires (Unix time)",
            registry=registry,
        )
        self.expiry.set_function(self._not_after)

    def _not_after(self) -> float:
        current = self._tls()
        return current.current.not_after if current is not None else 0.0

    def tls_start_client(self, data: tls.TlsData) -> None:
        current = self._tls()
        if current is None or data.ssl_conn is not None:
            return
        if self.roles.get(data.context.client.proxy_mode.full_spec) != "inbound":
            return
        # Under `disabled` a TLS client is still served with the mesh certificate (and its own
        # verified, if it sends one) while certificates are bound: callers that still run the
        # previous mode during a rollout keep working.
        strict = self._snapshot().config.mtls == "strict"
        current.start_inbound(data, strict, bool(ctx.options.http2))

    def tls_start_server(self, data: tls.TlsData) -> None:
        """Streamed requests to another sidecar: present our certificate, verify theirs."""
        current = self._tls()
        server = data.conn
        if current is None or data.ssl_conn is not None:
            return
        if not isinstance(server, connection.Server) or server.address is None:
            return
        snap = self._snapshot()
        if snap.config.mtls == "disabled":
            return
        address = f"{server.address[0]}:{server.address[1]}"
        expected = current.expected.get(data.context.client.id, {})
        identity = expected.get(address) or identity_at(snap, address)
        if identity is not None:
            current.start_upstream(data, identity, h2=data.context.client.alpn == b"h2")

    def client_disconnected(self, client: connection.Client) -> None:
        current = self._tls()
        if current is not None:
            current.expected.pop(client.id, None)

    def tls_failed_client(self, data: tls.TlsData) -> None:
        if self.roles.get(data.context.client.proxy_mode.full_spec) != "inbound":
            return
        self.failures.inc()
        if self._log is not None:
            peer = data.conn.peername
            self._log({
                "direction": "inbound",
                "event": "tls_handshake_failed",
                "peer": f"{peer[0]}:{peer[1]}" if peer else None,
                "reason": handshake_reason(data.conn.error or ""),
            })


_OPENSSL_REASON = re.compile(r"\('[^']*', '[^']*', '([^']+)'\)")
_IN_PARENS = re.compile(r"\((.*)\)\s*$")


def handshake_reason(error: str) -> str:
    """OpenSSL's own words ("peer did not return a certificate", "certificate has expired"),
    not the guess mitmproxy wraps them in (it blames the client for distrusting the proxy)."""
    found = _IN_PARENS.search(error)
    inner = found.group(1) if found else error
    reasons = _OPENSSL_REASON.findall(inner)
    return "; ".join(reasons) if reasons else inner


def identity_at(snap: Any, address: str) -> str | None:
    """The SPIFFE ID the sidecar at `address` must present; None when it is not a sidecar or
    when two services claim the address (then mitmproxy's default verification refuses it)."""
    if address in snap.bindings.plaintext_endpoints:
        return None
    found = set()
    for (service, _version), endpoints in snap.candidates.items():
        if any(ep.address == address for ep in endpoints):
            dest = snap.config.destinations.get(service)
            if dest is not None:
                found.add(dest.identity)
    return found.pop() if len(found) == 1 else None
