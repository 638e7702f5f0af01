"""The admin listener: /healthz, /ready, /metrics, /config, on the proxy's own event loop.

Serving from the same loop means a stuck proxy shows as a stuck admin endpoint, not as a
healthy one. aiohttp compresses /metrics when the scraper asks for gzip.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from aiohttp import web

from meshctl.contract import RuntimeBindings, SidecarConfig
from proxy_addon.telemetry import Metrics

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class Admin:
    def __init__(
        self,
        metrics: Metrics,
        current: Callable[[], tuple[SidecarConfig, RuntimeBindings]],
        is_ready: Callable[[], bool],
    ) -> None:
        self.metrics = metrics
        self.current = current
        self.is_ready = is_ready
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/ready", self.ready)
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_get("/config", self.config)
        return app

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(self, request: web.Request) -> web.Response:
        if self.is_ready():
            return web.json_response({"ready": True})
        return web.json_response({"ready": False}, status=503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.metrics.exposition())
        response.headers["Content-Type"] = PROMETHEUS_TEXT
        response.enable_compression()
        return response

    async def config(self, request: web.Request) -> web.Response:
        config, bindings = self.current()
        body = {
            "revision": config.revision,
            "name": config.name,
            "kind": config.kind,
            "instance": bindings.instance,
            "version": bindings.version,
            "ready": self.is_ready(),
            "config": config.model_dump(mode="json"),
        }
        return web.Response(text=json.dumps(body), content_type="application/json")
