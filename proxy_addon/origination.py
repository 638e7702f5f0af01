"""Calls to external services: TLS the sidecar originates, and names the runtime resolves.

A version with `tls` (compiled `Destination.origination`) is a third party: the app calls
`http://payments-api/...` in plain HTTP, and the sidecar opens TLS to the endpoint
(`api.example.com:443`), verifying the server's certificate against the version's CA file (or
the system trust store) for the SNI name (or the endpoint's host). Mesh mTLS never applies
there: the third party holds no mesh certificate and must not see one. A certificate that
does not verify is a connect failure (503 UF), like a refused connection.

Names: aiohttp asks `HostsResolver` first; a name the runtime bound in
`RuntimeBindings.hosts` (as /etc/hosts) resolves to that address, everything else through
the system resolver. The TLS name checked stays the DNS name, whatever address it resolved to.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Callable, Mapping

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from meshctl.contract import CompiledOriginationTls
from proxy_addon.tls import PeerTls

CHECK_INTERVAL_S = 1.0


class OriginationContexts:
    """One client context per CA file (None: the system store), rebuilt when the file changes."""

    def __init__(self) -> None:
        self._contexts: dict[str | None, tuple[ssl.SSLContext, tuple[int, int, int], float]] = {}

    def context(self, ca_file: str | None, now: float | None = None) -> ssl.SSLContext:
        now = time.monotonic() if now is None else now
        cached = self._contexts.get(ca_file)
        if cached is not None and now - cached[2] < CHECK_INTERVAL_S:
            return cached[0]
        signature = _stat(ca_file)
        if cached is not None and cached[1] == signature:
            self._contexts[ca_file] = (cached[0], signature, now)
            return cached[0]
        ctx = ssl.create_default_context(cafile=ca_file)  # CERT_REQUIRED, hostname checked
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._contexts[ca_file] = (ctx, signature, now)
        return ctx

    def peer(self, spec: CompiledOriginationTls, address: str, service: str) -> PeerTls:
        """The TLS of one call; the third party gets its own name as Host, not `service`."""
        name = spec.sni or (address.rpartition(":")[0] or address).strip("[]")
        return PeerTls(self.context(spec.ca_file), name, host_header=name, mesh_host=service)


def _stat(path: str | None) -> tuple[int, int, int]:
    if path is None:
        return (0, 0, 0)
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def version_of(endpoints: Mapping[str, tuple[str, ...]], address: str) -> str | None:
    for version, addresses in endpoints.items():
        if address in addresses:
            return version
    return None


class HostsResolver(AbstractResolver):
    """Runtime-bound names first (`hosts()` is read on every lookup), then the system resolver."""

    def __init__(self, hosts: Callable[[], Mapping[str, str]]) -> None:
        self._hosts = hosts
        self._system: AbstractResolver | None = None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self._hosts().get(host.lower().rstrip("."))
        if address is not None:
            fam = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [ResolveResult(hostname=host, host=address, port=port, family=fam, proto=0,
                                  flags=socket.AI_NUMERICHOST)]
        if self._system is None:
            self._system = DefaultResolver()
        return await self._system.resolve(host, port, family)

    async def close(self) -> None:
        if self._system is not None:
            await self._system.close()
