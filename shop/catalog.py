"""catalog: product data (GET /products, GET /products/{id})."""

from __future__ import annotations

from aiohttp import web

from shop.common import ENV_KEY, make_app, serve, served_by

PRODUCTS = {
    "1": {"id": "1", "name": "Espresso cup", "price": 9.5},
    "2": {"id": "2", "name": "Moka pot", "price": 34.0},
    "3": {"id": "3", "name": "Grinder", "price": 89.0},
}

routes = web.RouteTableDef()


@routes.get("/products")
async def list_products(request: web.Request) -> web.Response:
    env = request.app[ENV_KEY]
    return web.json_response({"products": list(PRODUCTS.values()), "served_by": served_by(env)})


@routes.get("/products/{id}")
async def get_product(request: web.Request) -> web.Response:
    env = request.app[ENV_KEY]
    product = PRODUCTS.get(request.match_info["id"])
    if product is None:
        return web.json_response({"error": "no such product"}, status=404)
    return web.json_response({"product": product, "served_by": served_by(env)})


if __name__ == "__main__":
    serve(make_app("catalog", routes))
