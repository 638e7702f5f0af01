"""frontend: the shop's pages (GET /, GET /product/{id}), built from catalog and reviews."""

from __future__ import annotations

import asyncio

from aiohttp import web

from shop.common import ENV_KEY, call, make_app, serve, served_by
from shop.inventory_client import check_stock

routes = web.RouteTableDef()


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    """The product list with the first product's reviews: one page that crosses every service."""
    env = request.app[ENV_KEY]
    catalog, reviews = await asyncio.gather(
        call(request, "catalog", "/products"),
        call(request, "reviews", "/reviews/1"),
    )
    return web.json_response(
        {
            "products": catalog["products"],
            "featured": {"id": "1", "reviews": reviews["reviews"], "stars": reviews.get("stars")},
            "served_by": served_by(env, catalog, reviews),
        }
    )


@routes.get("/product/{id}")
async def product_page(request: web.Request) -> web.Response:
    env = request.app[ENV_KEY]
    product_id = request.match_info["id"]
    product, reviews = await asyncio.gather(
        call(request, "catalog", f"/products/{product_id}"),
        call(request, "reviews", f"/reviews/{product_id}"),
    )
    return web.json_response(
        {
            "product": product["product"],
            "reviews": reviews["reviews"],
            "stars": reviews.get("stars"),
            "served_by": served_by(env, product, reviews),
        }
    )


@routes.get("/stock/{id}")
async def stock_page(request: web.Request) -> web.Response:
    """Stock of one product, from the gRPC inventory service (through the sidecar)."""
    env = request.app[ENV_KEY]
    stock = await check_stock(request, request.match_info["id"])
    return web.json_response({**stock, "served_by": served_by(env, stock)})


if __name__ == "__main__":
    serve(make_app("frontend", routes))
