"""reviews: product reviews (GET /reviews/{id}); with STARS=true it adds ratings' stars."""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web

from shop.common import ENV_KEY, UpstreamError, call, make_app, serve, served_by

REVIEWS = {
    "1": ["Holds exactly one espresso.", "Thick walls, keeps it hot."],
    "2": ["Classic.", "Takes practice.", "Great on a camping stove."],
    "3": ["Consistent grind."],
}
STARS = os.environ.get("STARS", "false").lower() == "true"

routes = web.RouteTableDef()


@routes.get("/reviews/{id}")
async def get_reviews(request: web.Request) -> web.Response:
    env = request.app[ENV_KEY]
    product_id = request.match_info["id"]
    body: dict[str, Any] = {"reviews": REVIEWS.get(product_id, []), "version": env.version}
    chain = served_by(env)
    if STARS:
        # Like Istio's bookinfo: reviews still answer when ratings are down, without stars.
        try:
            ratings = await call(request, "ratings", f"/ratings/{product_id}")
            body["stars"] = ratings["stars"]
            chain = served_by(env, ratings)
        except UpstreamError as exc:
            body["stars"] = None
            body["ratings_error"] = str(exc)
    body["served_by"] = chain
    return web.json_response(body)


if __name__ == "__main__":
    serve(make_app("reviews", routes))
