"""The pooled upstream HTTP client: one aiohttp session per sidecar, shared by all clients.

mitmproxy reuses an upstream connection only within one client connection; this pool keeps
connections across clients and lets the addon put timeouts around every attempt (mitmproxy
has none). mTLS is per call (`tls=`): the client context and the name the peer's certificate
must carry; aiohttp keys pooled connections by both, so a connection is reused only for the
identity it was verified against.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDict
from yarl import URL

from proxy_addon.tls import PeerTls

# Headers that describe one hop, never forwarded (RFC 9110 7.6.1), plus proxy-only ones.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)


class UpstreamError(Exception):
    """An attempt that produced no response. `kind`: connect-failure | reset."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class StreamInstead(Exception):  # noqa: N818 (a signal, not an error)
    """The answer is too large to buffer: send this request again through mitmproxy's
    streaming path. Raised after the headers only; the body was never read."""

    def __init__(self, address: str, scheme: str, target: str, headers: CIMultiDict[str]) -> None:
        super().__init__(address)
        self.address, self.scheme, self.target, self.headers = address, scheme, target, headers


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


class Upstream:
    def __init__(
        self, ssl_context: ssl.SSLContext | None = None, resolver: AbstractResolver | None = None
    ) -> None:
        self.ssl_context = ssl_context
        self.resolver = resolver  # None: aiohttp's default (system) resolver
        self._session: aiohttp.ClientSession | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=0,  # limits are the circuit breaker's job, not the pool's
                keepalive_timeout=15,
                ssl=self.ssl_context if self.ssl_context is not None else False,
                resolver=self.resolver,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                timeout=aiohttp.ClientTimeout(total=None),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(
        self,
        address: str,
        target: str,
        method: str,
        headers: CIMultiDict[str],
        body: bytes | None,
        scheme: str | None = None,
        tls: PeerTls | None = None,
        stream_over: int | None = None,
    ) -> UpstreamResponse:
        """One attempt. `stream_over`: a declared body larger than this raises StreamInstead
        (only for requests that can be sent again, i.e. GET)."""
        if tls is not None:
            scheme = "https"
        url = URL(f"{scheme or self.scheme}://{address}{target}", encoded=True)
        extra: dict[str, object] = {}
        if tls is not None:
            extra = {"ssl": tls.context, "server_hostname": tls.server_hostname}
            if tls.host_header is not None and headers.get("host") == tls.mesh_host:
                headers = CIMultiDict(headers)
                headers["host"] = tls.host_header
        try:
            async with self.session().request(
                method,
                url,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                compress=None,
                **extra,  # type: ignore[arg-type]
            ) as resp:
                length = resp.content_length
                if stream_over is not None and length is not None and length > stream_over:
                    raise StreamInstead(address, url.scheme, target, headers)
                data = await resp.read()
                return UpstreamResponse(
                    resp.status,
                    (resp.reason or "").encode("latin-1", "replace"),
                    [
                        (k, v)
                        for k, v in resp.raw_headers
                        if k.decode("latin-1").lower() not in HOP_BY_HOP
                    ],
                    data,
                )
        except aiohttp.ClientConnectorError:
            raise UpstreamError("connect-failure") from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise UpstreamError("reset") from exc
