"""Container tasks (Drove) and the work queue (projects, workers, access requests)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from taskd.errors import BadRequest
from taskd.http.keys import SERVICES
from taskd.models import now_ns
from taskd.web import store as wq
from taskd.web.render import render
from taskd.web.session import page

routes = web.RouteTableDef()


@routes.get("/ui/containers")
@page()
async def containers(request: web.Request) -> web.Response:
    raw = request.query.get("before") or None
    if raw is not None and not raw.isdigit():
        raise BadRequest("before must be a run id")

    def read(db: Any) -> list[dict[str, Any]]:
        return wq.run_page(
            db,
            kind="task",
            name=None,
            state=None,
            since=None,
            until=None,
            before=int(raw) if raw else None,
        )

    rows = await request.app[SERVICES].store.read(read)
    more = len(rows) > wq.PAGE
    rows = rows[: wq.PAGE]
    nxt = f"/ui/containers?before={rows[-1]['id']}" if more else None
    return render(request, "containers.html", runs=rows, next_page=nxt, now=now_ns())


def sparkline(history: list[list[int]], width: int = 160, height: int = 32) -> list[dict[str, Any]]:
    """Polyline points of open (new + failed) and closed task counts over time."""
    if len(history) < 2:
        return []
    t0, t1 = history[0][0], history[-1][0]
    top = max(max(h[1] + h[2], h[3]) for h in history) or 1
    lines = []
    for label, pick in (("open", lambda h: h[1] + h[2]), ("closed", lambda h: h[3])):
        pts = " ".join(
            f"{width * (h[0] - t0) / max(t1 - t0, 1):.1f},{height - height * pick(h) / top:.1f}"
            for h in history
        )
        lines.append({"label": label, "points": pts})
    return lines


@routes.get("/ui/queue")
@page()
async def queue(request: web.Request) -> web.Response:
    def read(db: Any) -> dict[str, Any]:
        return {
            "projects": wq.queue_projects(db),
            "workers": wq.queue_workers(db),
            "requests": wq.access_requests(db),
        }

    data = await request.app[SERVICES].store.read(read)
    for p in data["projects"]:
        p["lines"] = sparkline(p["history"])
    return render(request, "queue.html", **data)


def ids(request: web.Request) -> tuple[int, int]:
    pid, wid = request.match_info["project"], request.match_info["worker"]
    if not (pid.isdigit() and wid.isdigit()):
        raise BadRequest("project and worker must be ids")
    return int(pid), int(wid)


@routes.post("/ui/queue/requests/{project}/{worker}/accept")
@page(admin=True)
async def accept(request: web.Request) -> web.Response:
    await request.app[SERVICES].extras["queue"].projects.accept_request(*ids(request))
    raise web.HTTPSeeOther("/ui/queue")


@routes.post("/ui/queue/requests/{project}/{worker}/reject")
@page(admin=True)
async def reject(request: web.Request) -> web.Response:
    await request.app[SERVICES].extras["queue"].projects.reject_request(*ids(request))
    raise web.HTTPSeeOther("/ui/queue")


def setup(app: web.Application) -> None:
    app.add_routes(routes)
