"""Run detail (graph, timeline, attempts; kill and retry) and a task's live logs."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from taskd.errors import BadRequest
from taskd.http.keys import SERVICES
from taskd.http.tasklogs import stream_output
from taskd.models import now_ns
from taskd.web import store as wq
from taskd.web import words
from taskd.web.render import render
from taskd.web.session import page
from taskd.web.views import HUB, SSE_IDLE, sse_start, stream_slot

routes = web.RouteTableDef()
TIMELINE = 60  # attempts drawn on the timeline


@routes.get("/ui/runs/{uuid}")
@page()
async def run_detail(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    uuid = request.match_info["uuid"]

    def read(db: Any) -> dict[str, Any]:
        run = wq.run(db, uuid)
        attempts = wq.attempts(db, run["id"])
        found = wq.entries(db, [a["id"] for a in attempts[:50]])
        for a in attempts:
            a.update(found.get(a["id"], {"logs": [], "metadata": []}))
        return {"run": run, "attempts": attempts}

    data = await svc.store.read(read)
    for a in data["attempts"]:
        # An attempt that exited is coloured by its result, as its task is.
        if a["state"] == "exited":
            a["state"] = "succeeded" if a["succeeded"] else "failed"
    now = now_ns()
    shown = [a for a in data["attempts"] if a["started_at"]][:TIMELINE]
    t0 = min((a["started_at"] for a in shown), default=now)
    t1 = max((a["ended_at"] or now for a in shown), default=now)
    total = max(t1 - t0, 1)
    timeline = [
        {
            "task": a["task"],
            "number": a["number"],
            "state": a["state"],
            "left": 100 * (a["started_at"] - t0) / total,
            "width": max(0.5, 100 * ((a["ended_at"] or now) - a["started_at"]) / total),
            "took": words.span(a["started_at"], a["ended_at"], now),
        }
        for a in reversed(shown)
    ]
    run = data["run"]
    return render(
        request,
        "run.html",
        run=run,
        attempts=data["attempts"],
        timeline=timeline,
        now=now,
        active=run["state"] in ("queued", "running"),
        took=words.span(run["started_at"], run["ended_at"], now),
    )


@routes.get("/ui/runs/{uuid}/graph.json")
@page()
async def run_graph(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    uuid = request.match_info["uuid"]

    def read(db: Any) -> dict[str, Any]:
        run = wq.run(db, uuid)
        return {"run": {"uuid": uuid, "state": run["state"]}, **wq.graph(db, run["id"])}

    body = orjson.dumps(await svc.store.read(read), option=orjson.OPT_NON_STR_KEYS)
    return web.Response(
        body=body, content_type="application/json", headers={"Cache-Control": "no-store"}
    )


@routes.get("/ui/runs/{uuid}/events")
@page()
async def run_events(request: web.Request) -> web.StreamResponse:
    """Task and run state changes of one run as they are committed (server-sent events)."""
    svc = request.app[SERVICES]
    run = await svc.store.read(wq.run, request.match_info["uuid"])
    with stream_slot(request), request.app[HUB].follow_run(run["id"]) as changes:
        resp = await sse_start(request)
        # Changes committed between the page's read and this subscription: send a fresh state.
        await resp.write(b"event: reload\ndata: {}\n\n")
        while True:
            try:
                kind, ident, state = await asyncio.wait_for(changes.get(), SSE_IDLE)
            except TimeoutError:
                await resp.write(b": idle\n\n")
                continue
            if kind == "closing":
                break
            payload = orjson.dumps({"id": ident, "state": state}).decode()
            await resp.write(f"event: {kind}\ndata: {payload}\n\n".encode())
            if kind == "run" and state not in ("queued", "running"):
                break
    await resp.write_eof()
    return resp


@routes.post("/ui/runs/{uuid}/kill")
@page(admin=True)
async def kill(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    uuid = request.match_info["uuid"]
    run = await svc.store.read(wq.run, uuid)
    await svc.engine.kill_run(run["id"], "the run was killed from the dashboard")
    raise web.HTTPSeeOther(f"/ui/runs/{uuid}")


@routes.post("/ui/runs/{uuid}/retry")
@page(admin=True)
async def retry(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    uuid = request.match_info["uuid"]
    run = await svc.store.read(wq.run, uuid)
    if run["state"] == "succeeded":
        raise BadRequest("this run succeeded; there is nothing to retry")
    await svc.engine.restart(run["id"], lambda task: 1, at_once=True)
    raise web.HTTPSeeOther(f"/ui/runs/{uuid}")


# -- logs --------------------------------------------------------------------------------------


async def either(woken: asyncio.Event, changes: asyncio.Queue[Any]) -> bool:
    """Wait for new output or a change of the run; False after SSE_IDLE seconds of neither."""
    waiters = [asyncio.ensure_future(woken.wait()), asyncio.ensure_future(changes.get())]
    try:
        done, _ = await asyncio.wait(waiters, timeout=SSE_IDLE, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
    return bool(done)


def chunk_html(chunks: list[tuple[int, str, int, bytes]]) -> str:
    return "".join(
        f'<span class="s-{stream}">{words.ansi_html(data.decode("utf-8", "replace"))}</span>'
        for _, stream, _, data in chunks
    )


@routes.get("/ui/attempts/{uuid}/logs")
@page()
async def logs(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    att = await svc.store.read(wq.attempt, request.match_info["uuid"])
    chunks, running = await svc.store.read(wq.output_after, att["id"], 0, 2000)
    last = chunks[-1][0] if chunks else 0
    return render(
        request, "logs.html", attempt=att, text=chunk_html(chunks), running=running, last=last
    )


@routes.get("/ui/attempts/{uuid}/logs/events")
@page()
async def log_events(request: web.Request) -> web.StreamResponse:
    """New output of a running attempt as it is stored; ``ended`` when the attempt ends."""
    svc = request.app[SERVICES]
    att = await svc.store.read(wq.attempt, request.match_info["uuid"])
    raw = request.query.get("after", "0")
    if not raw.isdigit():
        raise BadRequest("after must be an output chunk id")
    after = int(raw)
    followers = svc.engine.followers
    # Output is flushed before the attempt's end is committed: its run's committed changes
    # are what say that it ended.
    with stream_slot(request), request.app[HUB].follow_run(att["run_id"]) as changes:
        resp = await sse_start(request)
        while True:
            woken = followers.event(att["id"])  # taken before reading: no flush is missed
            try:
                chunks, running = await svc.store.read(wq.output_after, att["id"], after)
                if chunks:
                    after = chunks[-1][0]
                    payload = orjson.dumps({"html": chunk_html(chunks), "last": after}).decode()
                    await resp.write(f"event: output\ndata: {payload}\n\n".encode())
                    if len(chunks) >= 200:
                        continue  # more is stored already
                if not running:
                    await resp.write(b"event: ended\ndata: {}\n\n")
                    break
                # Idle: only a keep-alive (which also finds a closed page); no read.
                while not await either(woken, changes):
                    await resp.write(b": idle\n\n")
                if request.app[HUB].closed:
                    break
            finally:
                followers.release(att["id"], woken)
    await resp.write_eof()
    return resp


@routes.get("/ui/attempts/{uuid}/logs.txt")
@page()
async def log_download(request: web.Request) -> web.StreamResponse:
    att = await request.app[SERVICES].store.read(wq.attempt, request.match_info["uuid"])
    return await stream_output(request, att["id"])


def setup(app: web.Application) -> None:
    app.add_routes(routes)
