"""The web dashboard, served by ``taskd serve`` itself at ``/`` (API routes keep their paths).

Server-rendered pages (jinja2) with htmx, live data over server-sent events fed by the engine's
committed batches, and vendored static assets: no build step, no CDN, no loop of its own.
"""

from __future__ import annotations

from aiohttp import web

from taskd.http.keys import SERVICES
from taskd.web import familyviews, render, runview, views
from taskd.web.live import Hub
from taskd.web.session import SESSIONS, Sessions, page


def setup(app: web.Application) -> None:
    """Add the dashboard's routes to the app; its live views follow the engine once started."""
    app[SESSIONS] = Sessions()
    hub = app[views.HUB] = Hub()

    async def follow_engine(app: web.Application) -> None:
        app[SERVICES].engine.committed.append(hub.committed)

    async def end_streams(app: web.Application) -> None:
        hub.close()  # open pages' streams end, so shutting down does not wait for them

    app.on_startup.append(follow_engine)
    app.on_shutdown.append(end_streams)
    views.setup(app)
    runview.setup(app)
    familyviews.setup(app)
    app.router.add_get("/ui/static/{name:.+}", render.static_file)
    app.router.add_route("*", "/ui/{tail:.*}", not_found)


@page()
async def not_found(request: web.Request) -> web.Response:
    return await render.error_page(request, 404, f"There is no page at {request.path}.")
