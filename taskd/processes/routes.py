"""Processes (Sundial): definitions, processes, task callbacks, captured logs, metrics.

Handlers parse, call one service (store, engine or scheduler), and reply in Sundial's shapes:
snake_case, unions keyed by type, ISO-8601 times with milliseconds.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from aiohttp import web

from taskd.engine.engine import insert_run_and
from taskd.errors import BadRequest, Conflict, NotFound
from taskd.http.envelopes import Envelope
from taskd.http.guard import access
from taskd.http.idempotency import Creates, idempotent
from taskd.http.jsonio import json_response, query_int, read_json
from taskd.http.keys import SERVICES
from taskd.http.tasklogs import stream_output
from taskd.models import RunKind, now_ns
from taskd.processes import definitions as defs
from taskd.processes import fileschema
from taskd.processes import store as dq
from taskd.processes import store_runs as pq
from taskd.timefmt import iso_ms, parse_iso
from taskd.validate import Doc, Problems

routes = web.RouteTableDef()

# Sundial's errors have taskd's own shape (code, message, errors).
ENVELOPE = Envelope("sundial", prefixes=("/api/", "/_internal_"))

TRIGGER = Creates((insert_run_and, dq.add_trigger), lambda db, args, _: (204, None))

PROCESS_STATUSES = ("running", "succeeded", "failed")
TASK_STATUSES = ("submitted", "runnable", "starting", "pending", "running", "failed", "succeeded")
RUN_STATES_OF = {"running": ["queued", "running"], "succeeded": ["succeeded"],
                 "failed": ["failed", "killed"]}  # fmt: skip


def no_content() -> web.Response:
    return web.Response(status=204)


def uuid_param(request: web.Request, name: str) -> str:
    raw = request.match_info[name]
    try:
        return str(uuidlib.UUID(raw))
    except ValueError:
        raise BadRequest(f"{name} must be a UUID, got {raw!r}") from None


def statuses(request: web.Request, allowed: tuple[str, ...]) -> list[str]:
    """``allowed_statuses`` given as a repeated key or comma-separated."""
    values = [
        v.strip() for raw in request.query.getall("allowed_statuses", []) for v in raw.split(",")
    ]
    values = [v for v in values if v]
    for v in values:
        if v not in allowed:
            raise BadRequest(f"allowed_statuses: {v!r} is not one of {', '.join(allowed)}")
    return values


def time_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    return parse_iso(raw, name) if raw else None


# -- shapes -------------------------------------------------------------------------------


def definition_json(d: dq.Definition) -> dict[str, Any]:
    doc = dict(d.doc)
    doc["paused"] = d.paused
    doc["version"] = d.version
    doc["created_at"] = iso_ms(d.created_at)
    doc["updated_at"] = iso_ms(d.updated_at)
    return doc


def process_json(run: Any, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    state = run["state"]
    status = "running" if state in ("queued", "running") else state
    return {
        "process_id": run["uuid"],
        "process_definition_name": run["name"],
        "start_time": iso_ms(run["started_at"] or run["created_at"]),
        "end_time": iso_ms(run["ended_at"]),
        "status": "failed" if status == "killed" else status,
        "task": tasks,
        "trigger": run["trigger"],
        "definition_version": run["definition_version"],
        "killed": bool(run["kill_requested"]) or state == "killed",
    }


# -- process definitions ------------------------------------------------------------------


@routes.get("/api/process_definitions")
@routes.get("/api/process_definitions/")
@access("read")
async def list_definitions(request: web.Request) -> web.Response:
    found = await request.app[SERVICES].store.read(dq.all_definitions)
    return json_response([definition_json(d) for d in found])


@routes.get("/api/process_definitions/{name}")
@access("read")
async def get_definition(request: web.Request) -> web.Response:
    d = await request.app[SERVICES].store.read(dq.get, request.match_info["name"])
    return json_response(definition_json(d))


async def refuse_if_managed(request: web.Request, name: str, new_file: str | None) -> None:
    """409 for an API change of a definition a file manages, unless ``?force=true``."""
    if request.query.get("force", "").lower() in ("1", "true", "yes"):
        return
    try:
        current = await request.app[SERVICES].store.read(dq.get, name)
    except NotFound:
        return
    why = defs.managed_conflict(name, current.doc, new_file)
    if why:
        raise Conflict(why)


@routes.put("/api/process_definitions/{name}")
@access("admin")
async def put_definition(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    name = request.match_info["name"]
    doc = defs.parse_definition(await read_json(request, expect=dict), name)
    errors = svc.engine.refusal(defs.templates(doc))
    if errors:
        raise BadRequest("invalid process definition: a task can never run here", details=errors)
    await refuse_if_managed(request, name, doc.get("managed_by_file"))
    d = await svc.store.write(dq.put, name, doc, now_ns())
    await svc.scheduler.refresh(name)
    return json_response(definition_json(d))


@routes.delete("/api/process_definitions/{name}")
@access("admin")
async def delete_definition(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    name = request.match_info["name"]
    await refuse_if_managed(request, name, None)
    await svc.store.write(dq.delete, name)
    await svc.scheduler.refresh(name)
    return no_content()


@routes.post("/api/process_definitions/{name}/trigger")
@access("admin")
@idempotent(TRIGGER)
async def trigger(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    task = request.query.get("task_definition_name") or None
    started = await svc.scheduler.trigger(request.match_info["name"], task)
    resp = no_content()
    if started is not None:  # lets a client follow the run it started (taskd trigger --wait)
        resp.headers["X-Taskd-Process-Id"] = started.uuid
    return resp


async def set_paused(request: web.Request, paused: bool) -> web.Response:
    svc = request.app[SERVICES]
    name = request.match_info["name"]
    await svc.store.write(dq.set_paused, name, paused, now_ns())
    await svc.scheduler.refresh(name)
    return no_content()


@routes.post("/api/process_definitions/{name}/pause")
@access("admin")
async def pause(request: web.Request) -> web.Response:
    return await set_paused(request, True)


@routes.post("/api/process_definitions/{name}/resume")
@access("admin")
async def resume(request: web.Request) -> web.Response:
    return await set_paused(request, False)


# -- processes ----------------------------------------------------------------------------


@routes.get("/api/processes")
@routes.get("/api/processes/")
@access("read")
async def list_processes(request: web.Request) -> web.Response:
    wanted = statuses(request, PROCESS_STATUSES)
    states = [s for w in wanted for s in RUN_STATES_OF[w]]
    filters = {
        "name": request.query.get("process_definition_name") or None,
        "states": states,
        "start": time_param(request, "start_time"),
        "end": time_param(request, "end_time"),
        "limit": query_int(request, "max_records", 100, minimum=1),
    }

    def read(db: Any) -> list[dict[str, Any]]:
        runs = pq.find_runs(db, RunKind.PROCESS, **filters)
        by_run = pq.attempts_of_runs(db, runs)
        return [process_json(r, by_run.get(r["id"], [])) for r in runs]

    return json_response(await request.app[SERVICES].store.read(read))


async def process_row(request: web.Request) -> Any:
    process_id = uuid_param(request, "process_id")
    return await request.app[SERVICES].store.read(pq.run_by_uuid, process_id, RunKind.PROCESS)


@routes.get("/api/processes/{process_id}")
@access("read")
async def get_process(request: web.Request) -> web.Response:
    process_id = uuid_param(request, "process_id")

    def read(db: Any) -> dict[str, Any]:
        run = pq.run_by_uuid(db, process_id, RunKind.PROCESS)
        return process_json(run, pq.attempts_of_runs(db, [run]).get(run["id"], []))

    return json_response(await request.app[SERVICES].store.read(read))


@routes.post("/api/processes/{process_id}/retry")
@access("admin")
async def retry(request: web.Request) -> web.Response:
    run = await process_row(request)
    if run["state"] == "succeeded":
        raise BadRequest("cannot retry a process that succeeded")
    await request.app[SERVICES].engine.restart(run["id"], lambda task: 1, at_once=True)
    return no_content()


@routes.post("/api/processes/{process_id}/kill")
@access("admin")
async def kill(request: web.Request) -> web.Response:
    run = await process_row(request)
    await request.app[SERVICES].engine.kill_run(run["id"], "the process was killed by request")
    return no_content()


# -- tasks --------------------------------------------------------------------------------


@routes.get("/api/tasks")
@routes.get("/api/tasks/")
@access("read")
async def search_tasks(request: web.Request) -> web.Response:
    found = await request.app[SERVICES].store.read(
        lambda db: pq.search_attempts(
            db,
            run_name=request.query.get("process_definition_name") or None,
            task_name=request.query.get("task_definition_name") or None,
            states=statuses(request, TASK_STATUSES),
            start=time_param(request, "start_time"),
            end=time_param(request, "end_time"),
            limit=query_int(request, "limit", 100, minimum=1) or 100,
        )
    )
    return json_response(found)


def entries(body: Any, id_key: str, fields: tuple[str, str]) -> list[tuple[str, int, str, str]]:
    problems = Problems()
    if not isinstance(body, list):
        body = [body]  # one entry on its own is accepted too
    out = []
    for i, raw in enumerate(body):
        doc = Doc(raw, f"[{i}]", problems)
        entry_id = doc.str(id_key, required=True)
        when = doc.str("when", required=True)
        a, b = (doc.str(f, "", required=True) for f in fields)
        try:
            entry_id = str(uuidlib.UUID(entry_id)) if entry_id else entry_id
        except ValueError:
            problems.add(f"[{i}].{id_key} must be a UUID")
        at = 0
        if when:
            try:
                at = parse_iso(when, f"[{i}].when")
            except BadRequest as exc:
                problems.add(exc.message)
        out.append((entry_id, at, a, b))
    problems.check("invalid entries")
    return out


@routes.post("/api/tasks/{task_id}/log_entries")
@access("task")
async def log_entries(request: web.Request) -> web.Response:
    task_id = uuid_param(request, "task_id")
    rows = entries(await read_json(request), "log_entry_id", ("source", "message"))
    await request.app[SERVICES].store.write(pq.add_entries, "log", task_id, rows)
    return no_content()


@routes.post("/api/tasks/{task_id}/metadata")
@access("task")
async def metadata(request: web.Request) -> web.Response:
    task_id = uuid_param(request, "task_id")
    rows = entries(await read_json(request), "metadata_entry_id", ("key", "value"))
    await request.app[SERVICES].store.write(pq.add_entries, "metadata", task_id, rows)
    return no_content()


async def report(request: web.Request, status: str) -> web.Response:
    task_id = uuid_param(request, "task_id")
    svc = request.app[SERVICES]
    await svc.store.read(pq.attempt_id, task_id)  # 404 for an unknown task
    await svc.engine.report(task_id, status)
    return no_content()


@routes.post("/api/tasks/{task_id}/succeed")
@access("task")
async def succeed(request: web.Request) -> web.Response:
    return await report(request, "succeeded")


@routes.post("/api/tasks/{task_id}/fail")
@access("task")
async def fail(request: web.Request) -> web.Response:
    return await report(request, "failed")


@routes.get("/api/tasks/{task_id}/logs")
@access("read")
async def task_logs(request: web.Request) -> web.StreamResponse:
    """What the task printed: ``stream`` stdout|stderr|executor|all, ``follow`` to its end."""
    task_id = uuid_param(request, "task_id")
    attempt_id = await request.app[SERVICES].store.read(pq.attempt_id, task_id)
    return await stream_output(request, attempt_id)


@routes.get("/api/schemas/definition.json")
@access("public")
async def definition_schema(request: web.Request) -> web.Response:
    """The JSON Schema of definition files: static, so editors may fetch it without a token."""
    return json_response(fileschema.DEFINITION)


# -- metrics ------------------------------------------------------------------------------


@routes.get("/_internal_/metrics")
@access("read")
async def metrics(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    counts = await svc.store.read(pq.counts)
    body = svc.engine.metrics.render(counts)
    return web.Response(body=body, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})  # fmt: skip


def setup(app: web.Application) -> None:
    app.add_routes(routes)
