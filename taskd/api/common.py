"""Routes that belong to no single family: the health check."""

from __future__ import annotations

from aiohttp import web

from taskd.api.apischema import Op, obj
from taskd.api.guard import access
from taskd.api.http import json_response

routes = web.RouteTableDef()


@routes.get("/ready")
@access("public")
async def ready(request: web.Request) -> web.Response:
    """Health check for every family (Daggy's greeting)."""
    return json_response({"msg": "Ya like DAGs?"})


OPENAPI = {
    "GET /ready": Op(
        "Health check (Daggy's greeting)",
        response=obj({"msg": {"const": "Ya like DAGs?"}}, ["msg"]),
    ),
}


def setup(app: web.Application) -> None:
    app.add_routes(routes)
