"""frontend: the shop's pages (GET /, GET /product/{id}), built from catalog and reviews."""

from __future__ import annotations

import asyncio

from aiohttp import web

from shop.common import ENV_KEY, call, make_app, serve, served_by

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


if __name__ == "__main__":
    serve(make_app("frontend", routes))
