"""A minimal app for the runtime benchmarks: answers every GET 200 with a small JSON body.

Standard library only (`http.server`), so starting it costs ~0.1 s of CPU where the shop's
aiohttp apps cost ~0.3 s: with it, `up` measures the mesh's own start-up (supervisor, fork
server, sidecars) rather than the apps' imports. Reads PORT like the shop's apps.
"""

from __future__ import annotations

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b'{"product": {"id": "1", "name": "Espresso cup"}, "served_by": "static"}'


class Static(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the shop's apps and the sidecars speak

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass  # no line per request in the app's log


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Static).serve_forever()
