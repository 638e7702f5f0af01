"""What every shop app shares: environment, health endpoint, calls through the sidecar, faults.

Two knobs make demos of failing versions possible without code changes:
FAIL_PERCENT (0..100: share of requests answered 500) and DELAY_MS (added latency).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

# Headers an app forwards on its own calls: user identity for A/B rules, trace context (W3C and
# B3, which the sidecars pass through), and the request id the first sidecar generated.
FORWARDED_HEADERS = ("end-user", "traceparent", "tracestate", "x-request-id", "cookie",
                     "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags",
                     "b3")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class AppEnv:
    port: int
    service: str
    version: str
    proxy: str | None
    fail_percent: float
    delay_ms: int

    @classmethod
    def from_environ(cls, default_service: str) -> AppEnv:
        return cls(
            port=int(os.environ.get("PORT", "8000")),
            service=os.environ.get("SERVICE", default_service),
            version=os.environ.get("VERSION", "v1"),
            proxy=os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy") or None,
            fail_percent=float(os.environ.get("FAIL_PERCENT", "0")),
            delay_ms=int(os.environ.get("DELAY_MS", "0")),
        )


ENV_KEY = web.AppKey("env", AppEnv)
SESSION_KEY = web.AppKey("session", ClientSession)


class UpstreamError(Exception):
    def __init__(self, service: str, status: int, detail: str) -> None:
        super().__init__(f"{service} answered {status}: {detail}")
        self.service = service
        self.status = status


async def call(request: web.Request, service: str, path: str) -> dict[str, Any]:
    """GET http://<service><path> through the sidecar, forwarding user and trace headers."""
    app = request.app
    env = app[ENV_KEY]
    headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
    try:
        async with app[SESSION_KEY].get(
            f"http://{service}{path}", headers=headers, proxy=env.proxy
        ) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise UpstreamError(service, resp.status, body[:200].decode(errors="replace"))
            data: dict[str, Any] = await resp.json(content_type=None)
            return data
    except (ClientError, TimeoutError) as exc:
        raise UpstreamError(service, 502, type(exc).__name__) from None


@web.middleware
async def shop_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tag every answer with who served it; apply the demo fault knobs (never to /healthz)."""
    env = request.app[ENV_KEY]
    if request.path != "/healthz":
        if env.delay_ms:
            await asyncio.sleep(env.delay_ms / 1000)
        if env.fail_percent and random.uniform(0, 100) < env.fail_percent:
            return _tag(web.json_response({"error": "injected failure"}, status=500), env)
    try:
        response = await handler(request)
    except UpstreamError as exc:
        response = web.json_response(
            {"error": str(exc), "upstream": exc.service, "status": exc.status}, status=502
        )
    return _tag(response, env)


def _tag(response: web.StreamResponse, env: AppEnv) -> web.StreamResponse:
    response.headers["x-shop-service"] = env.service
    response.headers["x-shop-version"] = env.version
    return response


async def healthz(request: web.Request) -> web.Response:
    env = request.app[ENV_KEY]
    return web.json_response({"status": "ok", "service": env.service, "version": env.version})


def make_app(default_service: str, routes: web.RouteTableDef) -> web.Application:
    env = AppEnv.from_environ(default_service)
    app = web.Application(middlewares=[shop_middleware])
    app[ENV_KEY] = env
    app.router.add_get("/healthz", healthz)
    app.add_routes(routes)
    app.cleanup_ctx.append(_client_session)
    return app


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    # One pooled session per app: keep-alive connections to the sidecar's outbound listener.
    session = ClientSession(
        connector=TCPConnector(limit=100), timeout=ClientTimeout(total=10)
    )
    app[SESSION_KEY] = session
    yield
    await session.close()


def served_by(env: AppEnv, *others: dict[str, Any]) -> dict[str, str]:
    """The chain of service versions that produced an answer, e.g. {frontend: v1, reviews: v2}."""
    chain = {env.service: env.version}
    for other in others:
        chain.update(other.get("served_by", {}))
    return chain


def serve(app: web.Application) -> None:
    env = app[ENV_KEY]
    web.run_app(app, host="127.0.0.1", port=env.port, print=None, access_log=None)
