"""The admin listener: /healthz, /ready, /metrics, /config, /endpoints, /revision, /samples, on
the proxy's own loop.

Serving from the same loop means a stuck proxy shows as a stuck admin endpoint, not as a
healthy one. A few lines of asyncio instead of aiohttp.web: the admin answers four GETs, one
request per connection, and this keeps ~4 MB of web framework out of every sidecar. /metrics
is gzipped when the scraper asks for it (Prometheus does).
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Callable

from meshctl.contract import RuntimeBindings, SidecarConfig, config_hash, dump_json
from proxy_addon.samples import RecentRequests
from proxy_addon.telemetry import Metrics

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
JSON = "application/json"
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
MAX_HEAD = 16 * 1024


class Admin:
    def __init__(
        self,
        metrics: Metrics,
        current: Callable[[], tuple[SidecarConfig, RuntimeBindings]],
        is_ready: Callable[[], bool],
        recent: RecentRequests | None = None,
        endpoints: Callable[[], object] | None = None,
    ) -> None:
        self.endpoints = endpoints  # endpoint health and ejections, shown under /config
        self.metrics = metrics
        self.recent = recent or RecentRequests()
        self.current = current
        self.is_ready = is_ready
        self._server: asyncio.Server | None = None
        self._revision: tuple[SidecarConfig, bytes] | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for one admin request."""
        path, _, query = path.partition("?")
        if method not in ("GET", "HEAD"):
            return 405, JSON, b'{"error": "method not allowed"}'
        if path == "/healthz":
            return 200, JSON, b'{"status": "ok"}'
        if path == "/ready":
            ready = self.is_ready()
            return (200 if ready else 503), JSON, json.dumps({"ready": ready}).encode()
        if path == "/metrics":
            return 200, PROMETHEUS_TEXT, self.metrics.exposition()
        if path == "/config":
            config, bindings = self.current()
            body = {
                "revision": config.revision,
                "name": config.name,
                "kind": config.kind,
                "instance": bindings.instance,
                "version": bindings.version,
                "ready": self.is_ready(),
                "config": config.model_dump(mode="json"),
                "endpoints": self.endpoints() if self.endpoints is not None else {},
            }
            return 200, JSON, json.dumps(body).encode()
        if path == "/endpoints":  # what /config carries under "endpoints", without the config
            return 200, JSON, json.dumps(self.endpoints() if self.endpoints is not None else {}).encode()
        if path == "/revision":
            return 200, JSON, self._revision_body()
        if path == "/samples":
            return 200, JSON, self._samples(query)
        return 404, JSON, b'{"error": "not found"}'

    def _revision_body(self) -> bytes:
        """The revision this sidecar runs and the hash of its config (as the manifest spells
        it: configs are canonical JSON, so this is the hash of the file it loaded). Small and
        cached per config: rollout polls it to confirm every sidecar of a wave."""
        config, _ = self.current()
        if self._revision is None or self._revision[0] is not config:
            body = {"revision": config.revision, "sha256": config_hash(dump_json(config))}
            self._revision = (config, json.dumps(body).encode())
        return self._revision[1]

    def _samples(self, query: str) -> bytes:
        """`?since=SEQ[&limit=0]`: the served requests after SEQ, [duration ms, status] each."""
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        try:
            since = int(params.get("since", "0"))
        except ValueError:
            since = 0
        samples = [] if params.get("limit") == "0" else self.recent.since(since)
        return json.dumps({"seq": self.recent.seq, "samples": samples}).encode()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            if len(head) > MAX_HEAD:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = (lines[0].split(" ") + ["", ""])[:3]
            accepts_gzip = any(
                line.lower().startswith("accept-encoding:") and "gzip" in line.lower()
                for line in lines[1:]
            )
            status, ctype, body = self.answer(method, path)
            extra = ""
            if accepts_gzip and len(body) > 1024:
                body = gzip.compress(body, compresslevel=5)
                extra = "Content-Encoding: gzip\r\n"
            writer.write(
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n".encode()
                + (body if method != "HEAD" else b"")
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            writer.close()
