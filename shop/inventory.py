"""inventory: stock levels over gRPC (cleartext HTTP/2), one method of each gRPC kind.

Environment as the other shop apps: PORT, SERVICE, VERSION, FAIL_PERCENT (share of calls
failed, with status FAIL_CODE, default UNAVAILABLE) and DELAY_MS. For demos and tests a call
may also ask for a failure or a delay in its metadata: `x-fail-code: INVALID_ARGUMENT`,
`x-delay-ms: 500`.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from shop.grpc_stubs import load

pb, pb_grpc = load("inventory")

STOCK = {"1": 12, "2": 3, "3": 0}


@dataclass(frozen=True)
class Knobs:
    service: str
    version: str
    fail_percent: float
    fail_code: grpc.StatusCode
    delay_ms: int

    @classmethod
    def from_environ(cls) -> Knobs:
        return cls(
            service=os.environ.get("SERVICE", "inventory"),
            version=os.environ.get("VERSION", "v1"),
            fail_percent=float(os.environ.get("FAIL_PERCENT", "0")),
            fail_code=grpc.StatusCode[os.environ.get("FAIL_CODE", "UNAVAILABLE")],
            delay_ms=int(os.environ.get("DELAY_MS", "0")),
        )


class Inventory(pb_grpc.InventoryServicer):
    def __init__(self, knobs: Knobs) -> None:
        self.knobs = knobs

    async def _faults(self, context: grpc.aio.ServicerContext) -> None:
        meta = dict(context.invocation_metadata() or ())
        delay = int(meta.get("x-delay-ms", self.knobs.delay_ms))
        if delay:
            await asyncio.sleep(delay / 1000)
        if code := meta.get("x-fail-code"):
            await context.abort(grpc.StatusCode[str(code)], f"asked to fail with {code}")
        if self.knobs.fail_percent and random.uniform(0, 100) < self.knobs.fail_percent:
            await context.abort(self.knobs.fail_code, "injected failure")

    def _stock(self, item: str, seq: int = 0) -> object:
        return pb.Stock(item=item, available=STOCK.get(item, 0), seq=seq,
                        service=self.knobs.service, version=self.knobs.version)

    async def Check(self, request, context):  # noqa: N802 (gRPC method names)
        await self._faults(context)
        # Trailing metadata: a proxy must carry trailers end to end.
        context.set_trailing_metadata((("x-inventory-version", self.knobs.version),))
        return self._stock(request.item)

    async def Watch(self, request, context) -> AsyncIterator[object]:  # noqa: N802
        await self._faults(context)
        for seq in range(max(request.updates, 1)):
            if seq and request.interval_ms:
                await asyncio.sleep(request.interval_ms / 1000)
            yield self._stock(request.item, seq)

    async def Reserve(self, request_iterator, context):  # noqa: N802
        await self._faults(context)
        items = quantity = 0
        async for req in request_iterator:
            items += 1
            quantity += req.quantity
        return pb.Receipt(items=items, quantity=quantity, service=self.knobs.service,
                          version=self.knobs.version)

    async def Trade(self, request_iterator, context) -> AsyncIterator[object]:  # noqa: N802
        await self._faults(context)
        seq = 0
        async for req in request_iterator:
            yield self._stock(req.item, seq)
            seq += 1


async def serve(port: int, knobs: Knobs) -> None:
    server = grpc.aio.server()
    pb_grpc.add_InventoryServicer_to_server(Inventory(knobs), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(os.environ.get("PORT", "9084")), Knobs.from_environ()))
