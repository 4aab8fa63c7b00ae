"""Dashboard pages: sign-in, the overview ("what needs me now"), definitions and the runs list."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from taskd.errors import BadRequest
from taskd.http.keys import SERVICES
from taskd.http.serving import FOLLOWS
from taskd.models import now_ns
from taskd.processes import store as dq
from taskd.web import store as wq
from taskd.web import words
from taskd.web.live import Hub
from taskd.web.render import render
from taskd.web.session import SESSION, SESSIONS, page, public, same_origin, set_cookie

routes = web.RouteTableDef()
HUB: web.AppKey[Hub] = web.AppKey("web_hub", Hub)
LATE = 60 * 10**9  # a slot that started more than a minute after its time was late
# Seconds between keep-alive comments on an idle event stream; writing one is also how a stream
# of a page that was closed is found and its slot given back.
SSE_IDLE = 5.0
FAMILIES = {"process": "Processes", "dag": "DAG runs", "task": "Container tasks"}
STATES = ("queued", "running", "succeeded", "failed", "killed")


def safe_next(value: str | None) -> str:
    """Only a path on this server is a place to go after signing in."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


@routes.get("/ui/login")
@public
async def login_form(request: web.Request) -> web.Response:
    return render(request, "login.html", next=safe_next(request.query.get("next")), error="")


@routes.post("/ui/login")
@public
async def login(request: web.Request) -> web.Response:
    form = await request.post()
    target = safe_next(str(form.get("next", "/")))
    if not same_origin(request):
        return render(
            request,
            "login.html",
            status=403,
            next=target,
            error="This sign-in form was sent from another site.",
        )
    who = await request.app[SERVICES].auth.identify(str(form.get("token", "")).strip())
    if not who.can_read:
        return render(
            request,
            "login.html",
            status=401,
            next=target,
            error="That token is not an admin or viewer token.",
        )
    value, _ = request.app[SESSIONS].create(who.role)
    response = web.Response(status=303, headers={"Location": target})
    set_cookie(response, value, request)
    return response


@routes.post("/ui/logout")
@page()
async def logout(request: web.Request) -> web.Response:
    request.app[SESSIONS].drop(request)
    response = web.Response(status=303, headers={"Location": "/ui/login"})
    response.del_cookie("taskd_session", path="/")
    return response


# -- overview -------------------------------------------------------------------------------


async def overview_data(request: web.Request, since: float) -> dict[str, Any]:
    svc = request.app[SERVICES]
    now = now_ns()
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    def read(db: Any) -> dict[str, Any]:
        return {
            "definitions": wq.definitions(db),
            "active": wq.active_runs(db),
            "slots": wq.slot_problems(db, int(since * 1e9), LATE),
            "leases": wq.expired_leases(db, now),
            "today": wq.counts_since(db, int(midnight.timestamp() * 1e9)),
        }

    data = await svc.store.read(read)
    failing = []
    for d in data["definitions"]:
        streak = words.failures_in_a_row(d["recent"])
        if streak:
            failing.append(
                {
                    "name": d["name"],
                    "streak": streak,
                    "run": d["recent"][0][3],
                    "capped": streak >= wq.STRIP,
                }
            )
    slow = []
    for r in data["active"]:
        usual = words.p95([d / 1e9 for d in r["durations"] if d is not None])
        took = words.span(r["started_at"], None, now)
        if usual is not None and took is not None and took > usual:
            slow.append({**r, "took": took, "usual": usual})
    docker = svc.engine.runners.get("docker")
    health = None if docker is None else getattr(docker, "available", None)
    return {
        **data,
        "failing": failing,
        "slow": slow,
        "docker_up": health,
        "down": svc.down(),
        "since": since,
    }


@routes.get("/")
@page()
async def overview(request: web.Request) -> web.Response:
    session = request[SESSION]
    since = session.last_visit
    if "since" in request.query:  # a live refresh keeps the first visit's time
        try:
            since = float(request.query["since"])
        except ValueError:
            raise BadRequest("since must be seconds since the epoch") from None
    else:
        session.last_visit = time.time()
    data = await overview_data(request, since)
    name = "overview_body.html" if request.headers.get("HX-Request") else "overview.html"
    return render(request, name, **data)


@routes.get("/ui/events")
@page()
async def events(request: web.Request) -> web.StreamResponse:
    """Tells an open overview that runs changed (at most once a second), so it refreshes."""
    with stream_slot(request), request.app[HUB].follow_all() as changed:
        resp = await sse_start(request)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), SSE_IDLE)
            if request.app[HUB].closed:
                break
            if changed.is_set():
                changed.clear()
                await resp.write(b"event: changed\ndata: {}\n\n")
                await asyncio.sleep(1.0)  # many changes in a burst make one refresh
            else:
                await resp.write(b": idle\n\n")
    await resp.write_eof()
    return resp


def stream_slot(request: web.Request) -> contextlib.AbstractContextManager[None]:
    """One of the server's bounded stream slots for a live page, counted per session."""
    return request.app[FOLLOWS].hold(f"web-session:{id(request[SESSION])}")


async def sse_start(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    return resp


# -- definitions ------------------------------------------------------------------------------


def strip(recent: list[list[Any]], now: int) -> list[dict[str, Any]]:
    """The last runs as bars, oldest on the left: colour = result, height = duration."""
    spans = [words.span(s, e, now) or 0 for _, s, e, _ in recent]
    top = max(spans, default=0) or 1
    bars = [
        {"state": st, "uuid": u, "height": max(15, int(100 * sp / top)), "took": sp}
        for (st, _, _, u), sp in zip(recent, spans, strict=True)
    ]
    bars.reverse()
    return bars


def next_fire(request: web.Request, name: str, paused: bool) -> int | None:
    entry = request.app[SERVICES].scheduler.entries.get(name)
    nxt = entry.next if entry is not None and not paused else None
    return int(nxt.timestamp() * 1e9) if nxt is not None else None


@routes.get("/ui/definitions")
@page()
async def definitions(request: web.Request) -> web.Response:
    rows = await request.app[SERVICES].store.read(wq.definitions)
    now = now_ns()
    for d in rows:
        d["next"] = next_fire(request, d["name"], d["paused"])
        d["words"] = words.schedule_words(d["schedule"])
        d["strip"] = strip(d["recent"], now)
    return render(request, "definitions.html", definitions=rows, now=now)


@routes.get("/ui/definitions/{name}")
@page()
async def definition(request: web.Request) -> web.Response:
    d = await request.app[SERVICES].store.read(wq.definition, request.match_info["name"])
    now = now_ns()
    d["next"] = next_fire(request, d["name"], d["paused"])
    d["words"] = words.schedule_words(d["doc"].get("schedule"))
    d["strip"] = strip(d["recent"], now)
    d["tasks"] = [t.get("task_definition_name") for t in d["doc"].get("task_definitions", [])]
    d["managed_by_file"] = d["doc"].get("managed_by_file")
    return render(request, "definition.html", d=d, now=now)


@routes.post("/ui/definitions/{name}/pause")
@page(admin=True)
async def pause(request: web.Request) -> web.Response:
    return await set_paused(request, True)


@routes.post("/ui/definitions/{name}/resume")
@page(admin=True)
async def resume(request: web.Request) -> web.Response:
    return await set_paused(request, False)


async def set_paused(request: web.Request, paused: bool) -> web.Response:
    svc = request.app[SERVICES]
    name = request.match_info["name"]
    await svc.store.write(dq.set_paused, name, paused, now_ns())
    await svc.scheduler.refresh(name)
    form = await request.post()
    if form.get("back") == "definition":  # sent from the definition's own page
        raise web.HTTPSeeOther(f"/ui/definitions/{quote(name, safe='')}")
    raise web.HTTPSeeOther(f"/ui/definitions#def-{quote(name, safe='')}")


@routes.post("/ui/definitions/{name}/run")
@page(admin=True)
async def run_now(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    form = await request.post()
    task = str(form.get("task") or "") or None
    run = await svc.scheduler.trigger(request.match_info["name"], task)
    if run is not None:
        raise web.HTTPSeeOther(f"/ui/runs/{run.uuid}")
    raise web.HTTPSeeOther("/ui/definitions")  # it waits for the running one (overlap: wait)


# -- runs -------------------------------------------------------------------------------------


def time_filter(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name, "")
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a date and time like 2026-01-31T08:00") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1e9)


@routes.get("/ui/runs")
@page()
async def runs(request: web.Request) -> web.Response:
    q = request.query
    kind = q.get("family") or None
    if kind is not None and kind not in FAMILIES:
        raise BadRequest(f"family must be one of {', '.join(FAMILIES)}")
    state = q.get("state") or None
    if state is not None and state not in STATES:
        raise BadRequest(f"state must be one of {', '.join(STATES)}")
    before = q.get("before") or None
    if before is not None and not before.isdigit():
        raise BadRequest("before must be a run id")
    filters = {
        "kind": kind,
        "name": q.get("name") or None,
        "state": state,
        "since": time_filter(request, "since"),
        "until": time_filter(request, "until"),
    }
    rows = await request.app[SERVICES].store.read(
        lambda db: wq.run_page(db, **filters, before=int(before) if before else None)
    )
    more = len(rows) > wq.PAGE
    rows = rows[: wq.PAGE]
    nxt = None
    if more:
        keep = {k: v for k, v in q.items() if k != "before" and v}
        nxt = "/ui/runs?" + urlencode({**keep, "before": rows[-1]["id"]})
    return render(
        request,
        "runs.html",
        runs=rows,
        next_page=nxt,
        query=q,
        families=FAMILIES,
        states=STATES,
        now=now_ns(),
    )


def setup(app: web.Application) -> None:
    app.add_routes(routes)
