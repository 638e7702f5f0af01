"""The frontend's gRPC client for inventory: one grpc.aio channel to `inventory:80`.

No proxy code here: the runtime sets `grpc_proxy` to the sidecar's outbound listener, and
gRPC opens its HTTP/2 connection through it (a CONNECT tunnel), as any gRPC client would.
"""

from __future__ import annotations

from typing import Any

import grpc
from aiohttp import web

from shop.common import FORWARDED_HEADERS, UpstreamError
from shop.grpc_stubs import load

pb, pb_grpc = load("inventory")
_CHANNEL = web.AppKey("inventory_channel", grpc.aio.Channel)


def _stub(app: web.Application) -> Any:
    if _CHANNEL not in app:
        app[_CHANNEL] = grpc.aio.insecure_channel("inventory:80")
    return pb_grpc.InventoryStub(app[_CHANNEL])


async def check_stock(request: web.Request, item: str) -> dict[str, Any]:
    metadata = tuple((h, request.headers[h]) for h in FORWARDED_HEADERS if h in request.headers)
    try:
        stock = await _stub(request.app).Check(pb.StockRequest(item=item), metadata=metadata, timeout=2)
    except grpc.aio.AioRpcError as exc:
        raise UpstreamError("inventory", 502, f"{exc.code().name}: {exc.details()}") from None
    return {"item": stock.item, "available": stock.available,
            "served_by": {stock.service: stock.version}}
