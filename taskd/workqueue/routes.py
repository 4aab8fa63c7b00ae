"""The work queue's HTTP face (task_tracker API): /worker, /task, /project, /log, /logs.

Replies use the envelope ``{"ok", "message"?, "content"?, "rate_limit_delay"?}``; errors are
rendered in it by the error middleware. Worker routes authenticate with X-Worker-ID and
X-Secret; project management needs taskd's admin token (a viewer token may read).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from taskd.errors import BadRequest, Forbidden, Unauthorized
from taskd.http import on_start
from taskd.http.envelopes import Envelope
from taskd.http.guard import access, principal_of
from taskd.http.idempotency import Creates, idempotent
from taskd.http.jsonio import json_response, query_int, read_json
from taskd.http.keys import SERVICES
from taskd.workqueue.model import (
    INT64_MAX,
    LOG_LEVELS,
    NewTask,
    Result,
    bool_field,
    int_field,
    parse_bulk,
    parse_releases,
    str_field,
)
from taskd.workqueue.service import QueueService, WorkerAuth

if TYPE_CHECKING:
    from taskd.app import Services

routes = web.RouteTableDef()

QUEUE_ROOTS = frozenset({"worker", "task", "project", "log", "logs"})


def error_body(message: str, details: list[str], extra: dict[str, Any]) -> dict[str, Any]:
    """The work queue's envelope with ``ok`` false, and the delay a rate limit asks for."""
    body = {"ok": False, "message": message}
    if "rate_limit_delay" in extra:
        body["rate_limit_delay"] = extra["rate_limit_delay"]
    return body


ENVELOPE = Envelope(
    "queue",
    roots=QUEUE_ROOTS,
    body=error_body,
    schema="QueueEnvelope",
    error_form={"properties": {"ok": {"const": False}}, "required": ["message"]},
)

QUEUE_SUBMIT = Creates((QueueService.submit_tx,), lambda db, args, _: (200, {"ok": True}))


def queue_of(request: web.Request) -> QueueService:
    return request.app[SERVICES].extras["queue"]


def reply(content: Any = None, message: str | None = None, *, ok: bool = True) -> web.Response:
    body: dict[str, Any] = {"ok": ok}
    if message:
        body["message"] = message
    if content is not None:
        body["content"] = content
    return json_response(body)


async def worker_of(request: web.Request, *, refused: int = 401) -> WorkerAuth:
    """The calling worker; a bad or missing X-Worker-ID/X-Secret is answered with ``refused``.

    task_tracker answers 401 on most worker routes but 403 on /task/get and /task/release,
    and its clients were written against those codes.
    """
    try:
        return await queue_of(request).authenticate(
            request.headers.get("X-Worker-ID"), request.headers.get("X-Secret")
        )
    except Unauthorized as exc:
        message = exc.message
        if "X-Signature" in request.headers and not request.headers.get("X-Secret"):
            # Earlier task_tracker clients signed requests; the documented protocol sends the
            # secret itself, and taskd keeps only a hash of it, so it cannot check signatures.
            message += (
                ": send the worker's secret in X-Secret; signed requests (X-Signature) are"
                " not supported"
            )
        if refused == 403:
            raise Forbidden(message) from None
        raise Unauthorized(message) from None


def path_id(request: web.Request, name: str, what: str) -> int:
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= INT64_MAX:
        raise BadRequest(f"Invalid {what} id")
    return int(raw)


async def body_of(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The JSON object sent, whatever the Content-Type (the seed's curl sends none)."""
    if optional and not (await request.read()).strip():
        return {}
    return await read_json(request, expect=dict)


# -- workers ----------------------------------------------------------------------------------


@routes.post("/worker/create")
@access("public")
async def create_worker(request: web.Request) -> web.Response:
    """Register a worker; its secret is in this reply and nowhere else, ever.

    Registering needs the admin credential unless the server was started with
    ``--queue-open-registration`` (anyone may then create workers, as the seed's examples do;
    a new worker still gets nothing from a private project without a grant).
    """
    if not request.app[SERVICES].settings.queue_open_registration:
        who = await principal_of(request)
        if who.role == "anonymous":
            raise Unauthorized(
                "registering a worker needs taskd's admin token (send 'Authorization: Bearer"
                " <admin token>'), or a server started with --queue-open-registration"
                " (TASKD_QUEUE_OPEN_REGISTRATION=1) to let anyone register workers"
            )
        if not who.is_admin:
            raise Forbidden("only an admin may register workers")
    alias = str_field(await body_of(request, optional=True), "alias", "")
    return reply({"worker": await queue_of(request).create_worker(alias)})


@routes.post("/worker/update")
@access("public")
async def update_worker(request: web.Request) -> web.Response:
    """Change the calling worker's alias."""
    worker = await worker_of(request)
    alias = str_field(await body_of(request), "alias")
    await queue_of(request).update_worker(worker, alias)
    return reply()


@routes.get("/worker/get/{id}")
@access("public")
async def get_worker(request: web.Request) -> web.Response:
    """A worker's id, creation time, alias and paused flag (never its secret)."""
    worker = await queue_of(request).get_worker(path_id(request, "id", "worker"))
    return reply({"worker": worker})


@routes.post("/worker/set_paused")
async def set_worker_paused(request: web.Request) -> web.Response:
    """Pause a worker, or let it work again (admin)."""
    body = await body_of(request)
    wid, paused = int_field(body, "worker", low=1), bool_field(body, "paused")
    await queue_of(request).set_worker_paused(wid, paused)
    return reply()


@routes.get("/worker/stats")
@access("read")
async def worker_stats(request: web.Request) -> web.Response:
    """Workers with the number of tasks each closed."""
    limit = min(query_int(request, "limit", 1000, minimum=1), 100_000)
    return reply({"stats": await queue_of(request).worker_stats(limit)})


# -- tasks ------------------------------------------------------------------------------------


@routes.post("/task/submit")
@access("public")
@idempotent(QUEUE_SUBMIT)
async def submit_task(request: web.Request) -> web.Response:
    """Submit one task (needs SUBMIT access on the project)."""
    worker = await worker_of(request)
    task = NewTask.parse(await body_of(request))
    await queue_of(request).submit(worker, task.project, [task])
    return reply()


@routes.post("/task/bulk_submit")
@access("public")
@idempotent(QUEUE_SUBMIT)
async def bulk_submit(request: web.Request) -> web.Response:
    """Submit many tasks of one project, all or none.

    The body is ``{"requests": [...]}`` (as task_tracker's code reads it) or the bare array of
    submit requests that its document describes.
    """
    worker = await worker_of(request)
    body = await read_json(request)
    if isinstance(body, list):
        body = {"requests": body}
    elif not isinstance(body, dict):
        raise BadRequest('send an array of submit requests, or {"requests": [...]}')
    requests = body.get("requests")
    if isinstance(requests, list) and len(requests) > 64:
        # Validating (and hashing unique strings of) thousands of tasks takes milliseconds:
        # off the event loop, so other requests are served meanwhile.
        project, tasks = await asyncio.to_thread(parse_bulk, body)
    else:
        project, tasks = parse_bulk(body)
    await queue_of(request).submit(worker, project, tasks)
    return reply()


# A batch lease is one transaction: a bound keeps it (and the writer) short.
MAX_LEASE_BATCH = 100


@routes.get("/task/get/{project}")
@access("public")
async def get_task(request: web.Request) -> web.Response:
    """Lease the project's next task; 200 with ok false when there is none.

    Extension: ``?count=N`` leases up to N tasks in one commit, answered as ``tasks``.
    """
    worker = await worker_of(request, refused=403)
    project = path_id(request, "project", "project")
    count = query_int(request, "count", minimum=1, maximum=MAX_LEASE_BATCH)
    if count is not None:
        tasks = await queue_of(request).lease_many(worker, project, count)
        if not tasks:
            return reply(message="No task available", ok=False)
        return reply({"tasks": tasks})
    task = await queue_of(request).lease(worker, project)
    if task is None:
        return reply(message="No task available", ok=False)
    return reply({"task": task})


@routes.post("/task/release")
@access("public")
async def release_task(request: web.Request) -> web.Response:
    """Report a leased task done (0), failed (1) or skipped (2)."""
    worker = await worker_of(request, refused=403)
    body = await body_of(request)
    task = int_field(body, "task_id", low=1)
    result = Result(int_field(body, "result", low=0, high=2))
    verification = int_field(body, "verification", 0)
    released = await queue_of(request).release(worker, task, result, verification)
    return reply({"updated": released.updated}, released.message, ok=released.ok)


@routes.post("/task/bulk_release")
@access("public")
async def bulk_release(request: web.Request) -> web.Response:
    """Report the results of several leased tasks in one request and one commit, all or none.

    Extension. The body is ``{"releases": [{"task_id", "result", "verification"?}, ...]}``
    (at most 100); each result means what it means on /task/release. Every task must be held
    by the calling worker under a live lease, or nothing is applied (409 naming the others).
    The answer lists each task's ``updated`` (and message) in the order sent.
    """
    worker = await worker_of(request, refused=403)
    releases = parse_releases(await body_of(request))
    done = await queue_of(request).release_many(worker, releases)
    results = []
    for release, outcome in zip(releases, done, strict=True):
        item: dict[str, Any] = {"task_id": release.task, "updated": outcome.updated}
        if outcome.message:
            item["message"] = outcome.message
        results.append(item)
    return reply({"results": results})


# -- worker logs ------------------------------------------------------------------------------


@routes.post("/log/{level:trace|info|warn|error}")
@access("public")
async def log_entry(request: web.Request) -> web.Response:
    """Store a log entry of the calling worker."""
    worker = await worker_of(request)
    body = await body_of(request)
    scope = str_field(body, "scope", nonempty=True)
    message = str_field(body, "message", nonempty=True, max_len=None)
    timestamp = int_field(body, "timestamp", low=1)
    level = LOG_LEVELS[request.match_info["level"]]
    await queue_of(request).log(worker, level, scope, message, timestamp)
    return reply()


@routes.post("/logs")
@access("read")
async def read_logs(request: web.Request) -> web.Response:
    """Worker log entries of one level since a time."""
    body = await body_of(request)
    level = int_field(body, "level", low=1, high=7)
    since = int_field(body, "since", 0, low=0)
    limit = int_field(body, "limit", 1000, low=1, high=10_000)
    return reply({"logs": await queue_of(request).logs(level, since, limit)})


# -- wiring -----------------------------------------------------------------------------------


async def start(services: Services) -> None:
    """Create the queue service with the app and start its background task."""
    settings = services.settings
    queue = QueueService(
        services.store,
        default_lease=settings.queue_default_lease,
        log_retention=settings.log_retention_days * 86400,
    )
    services.extras["queue"] = queue
    await queue.start(services.engine.supervisor)


async def stop(services: Services) -> None:
    queue = services.extras.pop("queue", None)
    if queue is not None:
        await queue.stop()


def setup(app: web.Application) -> None:
    # Imported here: the project routes use this module's helpers.
    from taskd.workqueue import routes_projects

    app.add_routes(routes)
    app.add_routes(routes_projects.routes)
    on_start(app, start, stop)
