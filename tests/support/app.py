"""A tiny configurable HTTP app for tests and benchmarks (aiohttp, 127.0.0.1).

`python -m tests.support.app --port P --name v1` serves:
- any path: JSON `{"name", "method", "path", "headers", "body_len", "count"}`, header `x-app`;
  query `status=N` answers N, `delay_ms=N` waits first, `size=N` pads the body to N bytes.
- `/healthz`: 200, or 503 after `POST /__config {"healthy": false}`.
- `/__config` (POST JSON): `fail_percent` (that share of requests answer 503, evenly
  spread: 50 fails every other request), `delay_ms`, `healthy`.
- `/__stats`: `{"requests": n, "paths": {path: n}, "hosts": {host: n}, "connections": n}`
  (not counted; `connections`: distinct client TCP connections seen).
- `/ws`: WebSocket echo. `/stream?chunks=N&interval_ms=M`: a chunked response in N parts.
- `/__call?to=URL`: calls URL through `HTTP_PROXY` (as a mesh app calls another service) and
  answers `{"status", "body"}` with the upstream's status; 502 when the call fails.
- `--plain` answers a fixed small text body with no JSON work (for benchmarks).
- `--cert FILE --key FILE` serves HTTPS instead (a third party standing in for an external API).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter

from aiohttp import WSMsgType, web


class State:
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.paths: Counter[str] = Counter()
        self.hosts: Counter[str] = Counter()
        self.peers: set[str] = set()  # client "host:port" pairs: one per TCP connection
        self.fail_percent = 0.0
        self.delay_ms = 0
        self.healthy = True


def build(state: State, plain: bool) -> web.Application:
    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {"requests": state.count, "paths": dict(state.paths), "hosts": dict(state.hosts),
             "connections": len(state.peers)}
        )

    async def configure(request: web.Request) -> web.Response:
        data = await request.json()
        state.fail_percent = float(data.get("fail_percent", state.fail_percent))
        state.delay_ms = int(data.get("delay_ms", state.delay_ms))
        state.healthy = bool(data.get("healthy", state.healthy))
        if data.get("reset"):
            state.count = 0
            state.paths.clear()
            state.hosts.clear()
            state.peers.clear()
        return web.json_response({"ok": True})

    async def call(request: web.Request) -> web.Response:
        import aiohttp

        async with aiohttp.ClientSession(trust_env=True) as session:
            try:
                async with session.get(request.query["to"]) as resp:
                    body = await resp.text()
                    return web.json_response({"status": resp.status, "body": body},
                                             status=resp.status)
            except aiohttp.ClientError as exc:
                return web.json_response({"error": str(exc)}, status=502)

    async def healthz(request: web.Request) -> web.Response:
        state.paths["/healthz"] += 1
        return web.json_response({"healthy": state.healthy}, status=200 if state.healthy else 503)

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == WSMsgType.TEXT:
                await sock.send_str(f"{state.name}:{msg.data}")
        return sock

    async def stream(request: web.Request) -> web.StreamResponse:
        chunks = int(request.query.get("chunks", "3"))
        interval = int(request.query.get("interval_ms", "100")) / 1000
        response = web.StreamResponse(headers={"x-app": state.name})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(chunks):
            await response.write(f"chunk {i}\n".encode())
            await asyncio.sleep(interval)
        await response.write_eof()
        return response

    async def handle(request: web.Request) -> web.StreamResponse:
        state.count += 1
        n = state.count
        state.paths[request.path] += 1
        state.hosts[request.host] += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            state.peers.add(f"{peer[0]}:{peer[1]}")
        if plain:
            return web.Response(text="ok\n", headers={"x-app": state.name})
        body = await request.read()
        delay = int(request.query.get("delay_ms", state.delay_ms))
        if delay:
            await asyncio.sleep(delay / 1000)
        status = int(request.query.get("status", "200"))
        if state.fail_percent and (n * state.fail_percent) % 100 < state.fail_percent:
            status = 503
        payload = {
            "name": state.name,
            "method": request.method,
            "path": request.path_qs,
            "headers": dict(request.headers),
            "body_len": len(body),
            "count": n,
        }
        text = json.dumps(payload)
        size = int(request.query.get("size", "0"))
        if size > len(text):
            text += " " * (size - len(text))
        return web.Response(
            text=text, status=status, content_type="application/json",
            headers={"x-app": state.name},
        )

    app = web.Application(client_max_size=1024**3)
    app.router.add_get("/__stats", stats)
    app.router.add_post("/__config", configure)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/__call", call)
    app.router.add_get("/ws", ws)
    app.router.add_get("/stream", stream)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="app")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--cert", help="serve HTTPS with this certificate (and --key)")
    parser.add_argument("--key")
    args = parser.parse_args()
    ssl_context = None
    if args.cert:
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.cert, args.key)
    web.run_app(
        build(State(args.name), args.plain), host="127.0.0.1", port=args.port,
        access_log=None, print=None, ssl_context=ssl_context,
    )


if __name__ == "__main__":
    main()
