"""Fixtures for data-plane tests: two app versions and one sidecar in front of them.

Module-scoped processes are reused; each test installs the config it needs with
`sidecar.reload(...)` (hot reload is itself part of what is tested), which is much cheaper
than starting a sidecar per test on a two-core machine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.configs import destination, service_config
from tests.support.procs import App, Sidecar, bindings_for, start_app, start_sidecar


@dataclass
class Result:
    status: int
    app: str | None  # which app version answered (x-app header)
    flags: str | None  # x-mesh-response-flags
    headers: dict[str, str]
    body: bytes
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.body)


Req = tuple[str, str, dict[str, str], bytes | None]  # method, url, headers, body


async def _fire(
    requests: Sequence[Req], proxy: str | None, concurrency: int, timeout: float
) -> list[Result]:
    results: list[Result | None] = [None] * len(requests)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(requests)):
        queue.put_nowait(i)
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                method, url, headers, body = requests[i]
                t0 = loop.time()
                try:
                    async with session.request(
                        method, url, headers=headers, data=body, proxy=proxy,
                        allow_redirects=False,
                    ) as resp:
                        data = await resp.read()
                        results[i] = Result(
                            resp.status, resp.headers.get("x-app"),
                            resp.headers.get("x-mesh-response-flags"), dict(resp.headers),
                            data, loop.time() - t0,
                        )
                except (aiohttp.ClientError, TimeoutError) as exc:
                    results[i] = Result(-1, None, None, {}, repr(exc).encode(), loop.time() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [r for r in results if r is not None]


def fire(
    requests: Sequence[Req], proxy: str | None = None, concurrency: int = 16,
    timeout: float = 30.0,
) -> list[Result]:
    """Send requests (through `proxy` if given) with bounded concurrency; never raises."""
    return asyncio.run(_fire(requests, proxy, concurrency, timeout))


def get(url: str, n: int = 1, headers: dict[str, str] | None = None) -> list[Req]:
    return [("GET", url, dict(headers or {}), None) for _ in range(n)]


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[str, App]]:
    started = {name: start_app(name) for name in ("v1", "v2")}
    yield started
    for app in started.values():
        app.stop()


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory, apps: dict[str, App]) -> Iterator[Sidecar]:
    """An outbound sidecar for `productpage`, calling `reviews` v1/v2 (the apps, directly)."""
    bindings = bindings_for(
        inbound=False,
        endpoints={"reviews": {"v1": (apps["v1"].address,), "v2": (apps["v2"].address,)}},
    )
    config = service_config("productpage", (destination("reviews", ("v1", "v2")),), revision="r0")
    sc = start_sidecar(Path(tmp_path_factory.mktemp("sidecar")), config, bindings)
    yield sc
    assert sc.stop() == 0, sc.stderr()[-2000:]
