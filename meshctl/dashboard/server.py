"""The dashboard's HTTP server (aiohttp): the bundled page, a JSON API and server-sent events.

  GET  /                      the page (static/, built from frontend/)
  GET  /api/graph             nodes and edges with their live numbers
  GET  /api/services/{name}   rules, versions (share vs weight, time series), instances
  GET  /api/rollout           applied revision, history, an apply in progress
  POST /api/explain           {"from", "method", "url", "headers"} -> the explain answer
  GET  /api/events            server-sent events: a "tick" with graph and rollout per sample

One background task samples the mesh every `interval` seconds; requests only read what it
computed, so ten open pages cost the sidecars nothing more than one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from meshctl.dashboard.graph import build_graph
from meshctl.dashboard.mesh import ConfigCache, MeshState, read_mesh
from meshctl.dashboard.sampler import AdminSource, History, PrometheusSource, Source
from meshctl.dashboard.series import merge
from meshctl.dashboard.views import Subjects, explain_view, rollout_view, service_view
from meshctl.errors import UsageError
from meshctl.runtime.state import StateDir

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("meshctl.dashboard")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


@dataclass
class Settings:
    state: StateDir
    interval: float = 2.0  # seconds between samples
    window: float = 10.0  # seconds of the live numbers
    keep: float = 300.0  # seconds of history
    series_step: float = 10.0  # seconds per point of the small time series
    prometheus: str | None = None
    loopback_only: bool = True  # refuse requests whose Host is not a loopback name


@dataclass
class Live:
    """What the sampler computed last; requests read only this."""

    mesh: MeshState | None = None
    graph: dict[str, Any] | None = None
    rollout: dict[str, Any] | None = None
    error: str | None = None
    at: float = 0.0
    subscribers: set[asyncio.Queue[str]] = field(default_factory=set)


class Dashboard:
    def __init__(self, settings: Settings, source: Source | None = None) -> None:
        self.settings = settings
        self.source: Source = source or (
            PrometheusSource(settings.prometheus) if settings.prometheus else AdminSource()
        )
        self.history = History(keep_s=settings.keep)
        self.configs = ConfigCache()
        self.subjects = Subjects()
        self.live = Live()
        self._task: asyncio.Task[None] | None = None

    # --- sampling ------------------------------------------------------------------------

    async def tick(self) -> None:
        try:
            mesh = read_mesh(self.settings.state, self.configs)
        except (UsageError, ValueError, KeyError) as exc:
            self.live.error = str(exc)
            self._publish()
            return
        sample = await self.source.sample(mesh.plan.sidecars)
        self.history.add(sample)
        seconds, by_instance = self.history.window(self.settings.window)
        revisions = self.history.revisions
        live = self.live
        live.mesh, live.at = mesh, sample.at
        live.graph = build_graph(mesh, merge(by_instance.values()), seconds, revisions)
        live.rollout = rollout_view(mesh, self.subjects.of(mesh))
        source_error = getattr(self.source, "last_error", None)
        live.error = source_error
        self._publish()

    def _publish(self) -> None:
        payload = json.dumps(self.snapshot())
        for queue in list(self.live.subscribers):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()  # a slow page gets the newest tick, not a backlog
            queue.put_nowait(payload)

    def snapshot(self) -> dict[str, Any]:
        return {"at": self.live.at, "error": self.live.error, "graph": self.live.graph,
                "rollout": self.live.rollout}

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except Exception:  # keep serving the last good view; the log says what broke
                log.exception("sampling the mesh failed")
            await asyncio.sleep(max(self.settings.interval - (time.monotonic() - started), 0.1))

    async def on_startup(self, app: web.Application) -> None:
        await self.tick()  # the first page load already has a graph
        self._task = asyncio.create_task(self.run())

    async def on_cleanup(self, app: web.Application) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # --- handlers --------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def graph(self, request: web.Request) -> web.Response:
        if self.live.graph is None:
            return _error(503, self.live.error or "no sample yet")
        return web.json_response(self.live.graph)

    async def service(self, request: web.Request) -> web.Response:
        mesh = self.live.mesh
        if mesh is None:
            return _error(503, self.live.error or "no sample yet")
        window = self.history.window(self.settings.window)
        view = service_view(
            mesh, request.match_info["name"], window,
            self.history.buckets(self.settings.series_step),
            self.history.revisions,
            merge(window[1].values()),
        )
        if view is None:
            return _error(404, f"no service named {request.match_info['name']!r}")
        return web.json_response(view)

    async def rollout(self, request: web.Request) -> web.Response:
        if self.live.rollout is None:
            return _error(503, self.live.error or "no sample yet")
        return web.json_response(self.live.rollout)

    async def explain(self, request: web.Request) -> web.Response:
        mesh = self.live.mesh
        if mesh is None:
            return _error(503, self.live.error or "no sample yet")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the request body must be JSON")
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object")
        try:
            return web.json_response(explain_view(mesh, body))
        except UsageError as exc:
            return _error(400, str(exc))

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        })
        await response.prepare(request)
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=2)
        self.live.subscribers.add(queue)
        try:
            await response.write(f"retry: 2000\nevent: tick\ndata: {json.dumps(self.snapshot())}\n\n".encode())
            while True:
                try:
                    payload = await asyncio.wait_for(queue.get(), timeout=15)
                    await response.write(f"event: tick\ndata: {payload}\n\n".encode())
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
        except ConnectionResetError:
            pass  # the page went away
        finally:
            self.live.subscribers.discard(queue)
        return response

    @web.middleware
    async def guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Bound to loopback, answer only loopback host names: a web page elsewhere cannot
        reach the API through DNS rebinding."""
        if self.settings.loopback_only:
            host = request.host or ""
            name = host.split("]")[0] + "]" if host.startswith("[") else host.rsplit(":", 1)[0]
            if name not in LOOPBACK_HOSTS:
                return _error(421, f"this dashboard answers on 127.0.0.1 only, not {request.host!r}")
        response: web.StreamResponse = await handler(request)
        return response

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        app.router.add_get("/", self.index)
        app.router.add_get("/api/graph", self.graph)
        app.router.add_get("/api/services/{name}", self.service)
        app.router.add_get("/api/rollout", self.rollout)
        app.router.add_post("/api/explain", self.explain)
        app.router.add_get("/api/events", self.events)
        app.router.add_static("/static/", STATIC)
        app.on_startup.append(self.on_startup)
        app.on_cleanup.append(self.on_cleanup)
        return app


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
