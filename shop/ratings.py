"""ratings: star ratings per product (GET /ratings/{id})."""

from __future__ import annotations

from aiohttp import web

from shop.common import ENV_KEY, make_app, serve, served_by

RATINGS = {"1": [5, 4], "2": [4, 4, 3], "3": [5]}

routes = web.RouteTableDef()


@routes.get("/ratings/{id}")
async def get_ratings(request: web.Request) -> web.Response:
    env = request.app[ENV_KEY]
    stars = RATINGS.get(request.match_info["id"], [])
    return web.json_response({"stars": stars, "served_by": served_by(env)})


if __name__ == "__main__":
    serve(make_app("ratings", routes))
