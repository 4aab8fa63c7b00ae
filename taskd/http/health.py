"""Routes that belong to no single family: the health check."""

from __future__ import annotations

from aiohttp import web

from taskd.errors import Unavailable
from taskd.http.guard import access
from taskd.http.jsonio import json_response
from taskd.http.keys import SERVICES
from taskd.http.openapi import Part, declare
from taskd.http.openapi.schema import Op, obj

routes = web.RouteTableDef()


@routes.get("/ready")
@access("public")
async def ready(request: web.Request) -> web.Response:
    """Health check for every family (Daggy's greeting); 503 naming what is down."""
    down = request.app[SERVICES].down()
    if down:
        raise Unavailable(
            f"taskd is degraded: {', '.join(sorted(down))} down",
            details=[f"{part}: {why}" for part, why in sorted(down.items())],
        )
    return json_response({"msg": "Ya like DAGs?"})


OPENAPI = {
    "GET /ready": Op(
        "Health check (Daggy's greeting)",
        description="503 while a part of taskd is down (a crashed background task waiting "
        "to restart, a database file that was replaced); the error names each part.",
        response=obj({"msg": {"const": "Ya like DAGs?"}}, ["msg"]),
        errors=(503,),
    ),
}


def setup(app: web.Application) -> None:
    app.add_routes(routes)
    declare(app, __name__, Part("common", "Health", "The health check shared by every family.",
                                OPENAPI))  # fmt: skip
