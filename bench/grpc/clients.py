"""HTTP/2 client choice for the sidecar: proxy_addon.h2client against httpx[http2], same calls.

    .venv/bin/pip install 'httpx[http2]'   # only for this comparison; not a dependency
    .venv/bin/python -m bench.grpc.clients [--calls 3000] [--concurrency 16] [--rounds 3]

Each client sends `Inventory/Check` as raw gRPC frames over cleartext HTTP/2 (prior
knowledge) to the inventory app, `--concurrency` calls in flight on one connection, in
alternating rounds. Reported: calls per second and the client process's CPU ms per call
(what it would add to a sidecar). httpx's loggers are set to WARNING, as a sidecar would.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time

from bench.grpc.run import CHECK, pb
from proxy_addon.h2client import H2Pool
from tests.grpc_mesh.conftest import start_grpc_app

MESSAGE = pb.StockRequest(item="1").SerializeToString()
FRAME = b"\x00" + len(MESSAGE).to_bytes(4, "big") + MESSAGE
HEADERS = [(b"content-type", b"application/grpc"), (b"te", b"trailers")]


async def with_h2client(address: str, calls: int, concurrency: int) -> None:
    pool = H2Pool()
    request = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"inventory"),
               (b":path", CHECK.encode()), *HEADERS]

    async def worker(n: int) -> None:
        for _ in range(n):
            answer = await pool.request(address, request, FRAME)
            assert (dict(answer.trailers) or dict(answer.headers)).get(b"grpc-status") == b"0"

    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    pool.close()


async def with_httpx(address: str, calls: int, concurrency: int) -> None:
    import httpx

    for name in ("httpx", "httpcore", "hpack", "h2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    async with httpx.AsyncClient(http1=False, http2=True) as client:
        async def worker(n: int) -> None:
            for _ in range(n):
                resp = await client.post(f"http://{address}{CHECK}", content=FRAME,
                                         headers={"content-type": "application/grpc", "te": "trailers",
                                                  "host": "inventory"})
                await resp.aread()
                assert resp.status_code == 200

        await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))


def measure(name: str, fn, address: str, args: argparse.Namespace) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    cpu0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(fn(address, args.calls, args.concurrency))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    rate, cpu_ms = args.calls / wall, cpu * 1000 / args.calls
    print(f"  {name}: {rate:.0f} calls/s, {cpu_ms:.3f} ms CPU per call", file=sys.stderr)
    return rate, cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    app = start_grpc_app("inventory", "v1")
    results: dict[str, list[tuple[float, float]]] = {"h2client": [], "httpx[http2]": []}
    try:
        measure("warm-up", with_h2client, app.address, argparse.Namespace(**{**vars(args), "calls": 320}))
        for _ in range(args.rounds):
            results["h2client"].append(measure("h2client", with_h2client, app.address, args))
            results["httpx[http2]"].append(measure("httpx[http2]", with_httpx, app.address, args))
    finally:
        app.stop()
    print("| client | calls/s | client CPU ms per call |")
    print("| --- | --- | --- |")
    for name, rows in results.items():
        print(f"| {name} | {statistics.median(r[0] for r in rows):.0f} | "
              f"{statistics.median(r[1] for r in rows):.3f} |")


if __name__ == "__main__":
    main()
