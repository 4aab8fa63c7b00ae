"""Container tasks (Drove): one-off containers created and killed by operations.

A Drove task is a run of kind ``task`` with one task on the docker runner, never retried.
Replies use Drove's envelope ``{"status", "data", "message"}`` and epoch-millisecond times;
errors under ``/apis/`` are rendered in it by the error middleware (validation errors as
``data.validationErrors`` with 400). As in Drove, a task that does not exist is not an HTTP
error: its GET and DELETE answer 200 with the FAILED envelope. Where taskd differs from Drove,
on purpose:

- a KILL whose task does not stop within ``opSpec.timeout`` answers 504 with the FAILED
  envelope; the kill goes on;
- DELETE refuses the record of a task that is still active (Drove would forget it while its
  container runs on);
- ``POST /apis/v1/tasks/search`` is a JSON search answering TaskInfos, not a UI redirect;
- each stream of the container is its own log file: ``output.log`` (stdout), ``stderr.log``
  and ``executor.log`` (what taskd noted, such as why the task failed).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from taskd.containertasks import store as cq
from taskd.containertasks.spec import (
    ID,
    INVALID,
    LOG_FILES,
    MAX_READ,
    STATES,
    drove_state,
    ident,
    op_spec,
    parse_create,
    parse_spec,
    task_info,
)
from taskd.engine.engine import insert_run_and
from taskd.errors import BadRequest, Conflict, NotFound, TaskdError
from taskd.http.envelopes import Envelope
from taskd.http.guard import access
from taskd.http.idempotency import Creates, idempotent
from taskd.http.jsonio import json_response, query_int, read_json
from taskd.http.keys import SERVICES
from taskd.models import RUN_ACTIVE
from taskd.store import output as oq
from taskd.validate import Doc, Problems

routes = web.RouteTableDef()


def error_body(message: str, details: list[str], extra: dict[str, Any]) -> dict[str, Any]:
    """Drove's envelope in its failed form; validation errors go in ``data``."""
    data: Any = {"validationErrors": details} if details else extra.get("data")
    body = {"status": "FAILED", "message": message}
    if data is not None:
        body["data"] = data
    return body


ENVELOPE = Envelope(
    "drove",
    prefixes=("/apis/",),
    body=error_body,
    schema="DroveEnvelope",
    error_form={"properties": {"status": {"const": "FAILED"}}},
)

DROVE_CREATE = Creates(
    (insert_run_and,),
    lambda db, args, _: (
        200,
        {
            "status": "SUCCESS",
            "data": {"taskId": f"{args[0].extra['sourceAppName']}-{args[0].extra['taskId']}"},
            "message": "success",
        },
    ),
)
MAX_MS = (2**63 - 1) // 1_000_000  # epoch ms that still fit 64 bits as ns


class KillTimeout(TaskdError):
    """The task was told to stop but had not stopped when the operation's timeout ran out."""

    status = 504
    code = "timeout"


def envelope(data: Any) -> web.Response:
    """A SUCCESS reply in Drove's envelope."""
    return json_response({"status": "SUCCESS", "data": data, "message": "success"})


def failure(message: str, data: Any = None) -> web.Response:
    """A FAILED reply with HTTP 200, as Drove answers a read of something that is not there."""
    body: dict[str, Any] = {"status": "FAILED", "message": message}
    if data is not None:
        body["data"] = data
    return json_response(body)


def missing(app: str, task_id: str) -> web.Response:
    return failure(f"No such task instance {app}/{task_id}")


def path_ids(request: web.Request, app_key: str = "sourceAppName") -> tuple[str, str]:
    """(app, task id) from the path; ids that cannot exist are simply not found."""
    app, task_id = request.match_info[app_key], request.match_info["taskId"]
    if not (ID.fullmatch(app) and ID.fullmatch(task_id)):
        raise NotFound(f"No such task instance {app}/{task_id}")
    return app, task_id


async def task_row(request: web.Request, app_key: str = "sourceAppName") -> Any:
    """The view row of the task the path names; 404 when there is none."""
    app, task_id = path_ids(request, app_key)
    row = await request.app[SERVICES].store.read(cq.find, app, task_id)
    if row is None:
        raise NotFound(f"No such task instance {app}/{task_id}")
    return row


# -- operations -----------------------------------------------------------------------------


@routes.get("/apis/v1/ping")
@access("read")
async def ping(request: web.Request) -> web.Response:
    """Drove's liveness check; its clients call it first to validate the endpoint."""
    return envelope("pong")


@routes.post("/apis/v1/tasks/validate/spec")
@access("read")
async def validate_spec(request: web.Request) -> web.Response:
    """Check a bare TaskSpec as a CREATE would, without starting anything.

    Duplicates are not checked (Drove does not either): the spec is valid, the task id may
    still be taken when it is created.
    """
    spec = Doc(await read_json(request, expect=dict), "spec", Problems())
    parse_spec(spec, request.app[SERVICES])
    return json_response({"status": "SUCCESS", "message": "success"})


@routes.post("/apis/v1/tasks/operations")
@access("admin")
@idempotent(DROVE_CREATE)
async def operations(request: web.Request) -> web.Response:
    """CREATE a task, or KILL one and wait up to ``opSpec.timeout`` for it to stop."""
    body = Doc(await read_json(request, expect=dict), "", Problems())
    kind = body.str("type", "", required=True)
    if kind == "CREATE":
        return await create(request, body)
    if kind == "KILL":
        return await kill(request, body)
    if not body.problems.errors:
        body.problems.add(f"type must be CREATE or KILL, got {kind!r}")
    body.problems.check(INVALID)
    raise AssertionError("check() raised")


async def create(request: web.Request, body: Doc) -> web.Response:
    svc = request.app[SERVICES]
    plan, app, task_id = parse_create(body, svc)
    try:
        await svc.engine.submit(plan, also=lambda db, run_id: cq.claim(db, run_id, plan.name))
    except Conflict:
        why = f"Task already exists for {app}/{task_id} with taskID: {app}-{task_id}"
        raise BadRequest(f"{INVALID}: {why}", details=[why]) from None
    return envelope({"taskId": f"{app}-{task_id}"})


async def kill(request: web.Request, body: Doc) -> web.Response:
    svc = request.app[SERVICES]
    app, task_id = ident(body, "sourceAppName"), ident(body, "taskId")
    timeout = op_spec(body)
    body.unknown({"type", "sourceAppName", "taskId", "opSpec"})
    body.problems.check(INVALID)
    assert timeout is not None
    row = await svc.store.read(cq.find, app, task_id)
    run = None
    if row is not None and row["run_state"] in RUN_ACTIVE:
        run = await svc.engine.kill_run(row["id"], "the task was killed by request")
    if run is None:
        why = f"Either task does not exist or has already finished for {app}/{task_id}"
        raise BadRequest(f"{INVALID}: {why}", details=[why])
    try:
        async with asyncio.timeout(timeout):
            await run.done.wait()
    except TimeoutError:
        raise KillTimeout(
            f"task {app}/{task_id} was told to stop but had not stopped after {timeout:g}s;"
            " it is still being stopped",
            data={"taskId": task_id},
        ) from None
    return envelope({"taskId": task_id})


# -- reading tasks --------------------------------------------------------------------------


@routes.get("/apis/v1/tasks")
@access("read")
async def list_active(request: web.Request) -> web.Response:
    """Tasks still pending, provisioning or running."""
    svc = request.app[SERVICES]
    rows = await svc.store.read(cq.active)
    return envelope([task_info(r, svc.settings.hostname) for r in rows])


@routes.get("/apis/v1/tasks/{sourceAppName}/instances/{taskId}")
@access("read")
async def get_task(request: web.Request) -> web.Response:
    """One task in any state, until its record is deleted; 200 + FAILED when there is none."""
    app, task_id = request.match_info["sourceAppName"], request.match_info["taskId"]
    row = None
    if ID.fullmatch(app) and ID.fullmatch(task_id):
        row = await request.app[SERVICES].store.read(cq.find, app, task_id)
    if row is None:
        return missing(app, task_id)
    return envelope(task_info(row, request.app[SERVICES].settings.hostname))


@routes.delete("/apis/v1/tasks/{sourceAppName}/instances/{taskId}")
@access("admin")
async def delete_task(request: web.Request) -> web.Response:
    """Delete a finished task's record and output; an active task must be killed first.

    What cannot be deleted answers 200 with the FAILED envelope and ``{"deleted": false}``,
    as Drove does.
    """
    app, task_id = request.match_info["sourceAppName"], request.match_info["taskId"]
    why = f"Could not delete {app}/{task_id}"
    if not (ID.fullmatch(app) and ID.fullmatch(task_id)):
        return failure(f"{why}: no such task instance", {"deleted": False})
    try:
        await request.app[SERVICES].store.write(cq.delete_finished, app, task_id)
    except (Conflict, NotFound) as exc:
        return failure(f"{why}: {exc.message}", {"deleted": False})
    return envelope({"deleted": True})


@routes.post("/apis/v1/tasks/search")
@access("read")
async def search(request: web.Request) -> web.Response:
    """Find tasks, newest first.

    JSON body (every field optional): ``sourceAppName``, ``taskId`` (exact) or ``taskIdPrefix``,
    ``states`` (Drove states), ``from`` (inclusive) and ``to`` (exclusive) as epoch ms of
    ``created``, ``limit`` (1..1000, default 100). Drove's form fields ``taskSearchAppName``
    and ``taskSearchTaskID`` (both required in a form) find one task.
    """
    problems = Problems()
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = dict(await request.post())
        except ValueError as exc:  # a multipart type without a boundary, a broken form
            raise BadRequest(f"{INVALID}: the form cannot be read: {exc}") from None
        doc = Doc(form, "", problems)
        app, task_id = ident(doc, "taskSearchAppName"), ident(doc, "taskSearchTaskID")
        problems.check(INVALID)
        filters: dict[str, Any] = {"app": app, "task_id": task_id}
    else:
        raw = await request.read()
        doc = Doc(await read_json(request, expect=dict) if raw.strip() else {}, "", problems)
        filters = search_filters(doc)
    svc = request.app[SERVICES]
    rows = await svc.store.read(lambda db: cq.search(db, **filters))
    return envelope([task_info(r, svc.settings.hostname) for r in rows])


def search_filters(doc: Doc) -> dict[str, Any]:
    """Keyword arguments of the store's search, from a JSON search body."""

    def optional_id(*keys: str) -> str | None:
        for key in keys:
            if doc.value.get(key) is not None:
                return ident(doc, key)
        return None

    app = optional_id("sourceAppName", "taskSearchAppName")
    task_id = optional_id("taskId", "taskSearchTaskID")
    prefix = optional_id("taskIdPrefix")
    states = doc.strings("states")
    for state in states:
        if state not in STATES:
            doc.problems.add(f"states: {state!r} is not one of {', '.join(STATES)}")
    # Epoch ms become ns in the store: bounded so that fits 64 bits.
    start, end = (doc.int(key, minimum=0, maximum=MAX_MS) for key in ("from", "to"))
    limit = doc.int("limit", 100, minimum=1, maximum=1000)
    doc.unknown({"sourceAppName", "taskSearchAppName", "taskId", "taskSearchTaskID",
                 "taskIdPrefix", "states", "from", "to", "limit"})  # fmt: skip
    doc.problems.check(INVALID)
    wanted = set(states)
    return {
        "app": app, "task_id": task_id, "prefix": prefix, "limit": limit,
        "start": None if start is None else start * 1_000_000,
        "end": None if end is None else end * 1_000_000,
        "keep": (lambda row: drove_state(row)[0] in wanted) if wanted else None,
    }  # fmt: skip


# -- log files ------------------------------------------------------------------------------

LOGS = "/apis/v1/logfiles/tasks/{sourceAppName}/{taskId}"


def log_stream(request: web.Request) -> str:
    """The captured stream a log file name stands for."""
    name = request.match_info["fileName"]
    if name not in LOG_FILES:
        raise NotFound(f"no log file {name!r}; the files are {', '.join(LOG_FILES)}")
    return LOG_FILES[name]


@routes.get(LOGS + "/list")
@access("read")
async def log_list(request: web.Request) -> web.Response:
    """The task's log files (none before its container was started); no envelope."""
    row = await task_row(request)
    return json_response({"files": list(LOG_FILES) if row["attempt_id"] else []})


@routes.get(LOGS + "/read/{fileName}")
@access("read")
async def log_read(request: web.Request) -> web.Response:
    """``length`` bytes from ``offset`` and the offset to ask for next; offset -1 (the
    default) answers no data and the end offset, to start tailing. No envelope."""
    stream = log_stream(request)
    offset = query_int(request, "offset", -1, minimum=-1)
    length = min(query_int(request, "length", 4096, minimum=1) or 4096, MAX_READ)
    row = await task_row(request)
    store, attempt_id = request.app[SERVICES].store, row["attempt_id"]
    end = await store.read(cq.stream_end, attempt_id, stream) if attempt_id else 0
    if offset == -1 or offset == end:
        return json_response({"data": "", "offset": end})
    if offset > end:
        raise BadRequest(f"offset {offset} is past the end of the file ({end} bytes)")
    chunks = await store.read(cq.stream_from, attempt_id, stream, offset, length)
    parts, pos, budget = [], offset, length
    for chunk in chunks:
        if chunk.offset > pos:  # rolled out of the bounded log: say so and skip over it
            parts.append(oq.dropped_marker(chunk.offset - pos))
            pos = chunk.offset
        piece = chunk.data[pos - chunk.offset :][:budget]
        parts.append(piece)
        pos += len(piece)
        budget -= len(piece)
        if not budget:
            break
    data = b"".join(parts)
    cut = incomplete_utf8(data)
    if cut and cut < len(parts[-1]):  # let the next read start at the character's first byte
        data, pos = data[:-cut], pos - cut
    return json_response({"data": data.decode(errors="replace"), "offset": pos})


def incomplete_utf8(data: bytes) -> int:
    """How many bytes at the end of ``data`` start a UTF-8 character they do not finish."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:  # a continuation byte: look further back
            continue
        need = 1 if byte < 0x80 else 2 if byte >> 5 == 6 else 3 if byte >> 4 == 14 else 4
        return back if back < need else 0
    return 0


@routes.get(LOGS + "/download/{fileName}")
@access("read")
async def log_download(request: web.Request) -> web.Response:
    """The whole file as an attachment (a marker says where a long output was cut)."""
    stream = log_stream(request)
    row = await task_row(request)
    attempt_id = row["attempt_id"]
    store = request.app[SERVICES].store
    data = await store.read(cq.stream_bytes, attempt_id, stream) if attempt_id else b""
    name = request.match_info["fileName"]
    disposition = {"Content-Disposition": f"attachment; filename={name}"}
    return web.Response(body=data, content_type="text/plain", charset="utf-8", headers=disposition)


def setup(app: web.Application) -> None:
    app.add_routes(routes)
