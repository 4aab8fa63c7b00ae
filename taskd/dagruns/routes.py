"""DAG runs (Daggy): ad-hoc DAGs with parameter expansion and generator tasks, under ``/v1``.

Handlers parse, call one service (the DAG spec parser, the engine or a store view) and reply in
Daggy's shapes: integer ``runID``s, nanosecond time strings, upper-case states. A dagrun is an
ordinary run of kind ``dag``; this module only translates. A ``runID`` is the run's number
among DAG runs (0, 1, 2, ... as in Daggy), not the core's run id, which all kinds share.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from taskd.dagruns import budget as dagbudget
from taskd.dagruns import counts as dagcounts
from taskd.dagruns import spec as dagspec
from taskd.dagruns import store as dq
from taskd.engine.engine import Engine, GeneratorHook, insert_run_and
from taskd.engine.graph import TaskNode
from taskd.errors import BadRequest, NotFound
from taskd.http import on_start
from taskd.http.envelopes import Envelope
from taskd.http.guard import access
from taskd.http.idempotency import Creates, idempotent
from taskd.http.jsonio import json_response, query_bool, read_json
from taskd.http.keys import SERVICES
from taskd.log import get_logger
from taskd.models import RunKind, RunState, TaskState, Trigger
from taskd.store import idempotency as iq
from taskd.store.runs import RunPlan
from taskd.timefmt import ns_str

if TYPE_CHECKING:
    from taskd.app import Services

log = get_logger("taskd.dagruns.routes")


def error_body(message: str, details: list[str], extra: dict[str, Any]) -> dict[str, Any]:
    """Daggy's error shape (also the health check's: it is Daggy's greeting)."""
    body: dict[str, Any] = {"error": message}
    if details:
        body["errors"] = details
    return body


ENVELOPE = Envelope(
    "daggy", prefixes=("/v1/",), paths=frozenset({"/ready"}), body=error_body, schema="DaggyError"
)

# Daggy answers a DAG run's number among DAG runs, given in the same transaction.
DAGRUN = Creates(
    (insert_run_and,), lambda db, args, run_id: (200, {"runID": iq.kind_number(db, run_id)})
)
routes = web.RouteTableDef()
COUNTS = web.AppKey("dagrun_counts", dagcounts.Counts)

# Daggy leaves the children of a failed task QUEUED for ever; so does this mapping
# (upstream_failed), and a task waiting for its parents or for capacity is QUEUED too.
TASK_STATES = {
    TaskState.WAITING: "QUEUED",
    TaskState.READY: "QUEUED",
    TaskState.UPSTREAM_FAILED: "QUEUED",
    TaskState.RUNNING: "RUNNING",
    TaskState.RETRY_WAIT: "RETRY",
    TaskState.SUCCEEDED: "COMPLETED",
    TaskState.FAILED: "ERRORED",
    TaskState.KILLED: "KILLED",
}
RUN_STATES = {
    RunState.QUEUED: "QUEUED",
    RunState.RUNNING: "RUNNING",
    RunState.SUCCEEDED: "COMPLETED",
    RunState.FAILED: "ERRORED",
    RunState.KILLED: "KILLED",
}
RESUME_TO = ("QUEUED", "RUNNING")
RESUMABLE = ("ERRORED", "KILLED")
# How long a DELETE waits for what it killed to be gone, beyond the kill grace period.
KILL_SLACK = 5.0
BIG_BODY = 256 << 10  # bytes of DAG spec worth parsing off the event loop


def run_id_of(request: web.Request) -> int:
    raw = request.match_info["runid"]
    if not raw.isascii() or not raw.isdigit():
        raise BadRequest(f"runid must be an integer, got {raw!r}")
    if len(raw) > 18:  # beyond any id SQLite can hold
        raise NotFound(f"no DAG run {raw}")
    return int(raw)


# -- shapes -------------------------------------------------------------------------------


def task_json(t: dq.TaskRow) -> dict[str, Any]:
    """A task's definition as Daggy echoes it: expanded job, parents and children by name."""
    echo = t.echo
    job = echo.get("job", {})
    if job.get("environment") is None:
        job = {**job, "environment": []}  # the default Daggy's executors fill in
    return {
        "maxRetries": echo.get("maxRetries", 0),
        "retryIntervalSeconds": echo.get("retryIntervalSeconds", 0),
        "job": job,
        "children": t.children,
        "parents": t.parents,
        "isGenerator": echo.get("isGenerator", False),
    }


def attempt_json(a: dq.AttemptRow) -> dict[str, Any]:
    return {
        "startTime": ns_str(a.started_at),
        "stopTime": ns_str(a.ended_at),
        # Daggy's rc is always an integer; an attempt that never exited (start failure,
        # lost) reports -1.
        "rc": a.exit_code if a.exit_code is not None else -1,
        "outputLog": a.logs.get("stdout", ""),
        "errorLog": a.logs.get("stderr", ""),
        "executorLog": a.logs.get("executor", ""),
    }


def run_json(view: dq.RunView) -> dict[str, Any]:
    names = {t.id: t.name for t in view.tasks}
    attempts: dict[str, list[dict[str, Any]]] = {t.name: [] for t in view.tasks}
    for a in view.attempts:
        attempts[names[a.task_id]].append(attempt_json(a))
    return {
        "runID": view.id,
        "tag": view.tag,
        "tasks": {t.name: task_json(t) for t in view.tasks},
        "taskStates": {t.name: TASK_STATES[t.state] for t in view.tasks},
        "taskAttempts": attempts,
        "dagStateChanges": [
            {"time": ns_str(at), "state": RUN_STATES[state]} for state, at in view.changes
        ],
    }


def summary_json(r: dq.RunSummary) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for state, n in r.task_counts.items():
        name = TASK_STATES[state]
        counts[name] = counts.get(name, 0) + n
    return {
        "runID": r.id,
        "tag": r.tag,
        "state": RUN_STATES[r.state],
        "startTime": ns_str(r.created_at),
        "lastUpdate": ns_str(r.last_update),
        "taskCounts": counts,
    }


# -- services -----------------------------------------------------------------------------


async def checked_spec(
    request: web.Request, *, keep: bool = True, paused: contextlib.ExitStack | None = None
) -> dagspec.DagSpec | None:
    """The request's DAG, valid and able to run on this host, or BadRequest with every reason.

    With ``keep=False`` (validation only) nothing is returned, and a large expansion is also
    freed off the event loop. A large DAG is decoded and checked in a thread; with ``paused``
    the garbage collector stays paused (until that stack closes) from its decoding on.
    """
    engine = request.app[SERVICES].engine
    big_body = (request.content_length or 0) > BIG_BODY
    if big_body and paused is not None:
        paused.enter_context(dagbudget.collector_paused())
    try:
        body = await read_json(request, in_thread=big_body)
    except BadRequest as exc:  # Daggy clients get a list of errors whatever was wrong
        raise BadRequest(exc.message, details=[exc.message]) from None

    def check() -> dagspec.DagSpec | None:
        spec = dagspec.parse_spec(body)
        errors = engine.refusal(spec.tasks)
        if errors or not keep:
            dagbudget.release(spec.tasks)  # freed here, not on the event loop
        if errors:
            raise BadRequest("invalid DAG: a task can never run on this host", details=errors)
        return spec if keep else None

    def check_off_loop() -> dagspec.DagSpec | None:
        with dagbudget.collector_paused():
            return check()

    if await dagbudget.off_loop(request, body, big_body=big_body):
        # Thousands of tasks take a while to check; other requests go on meanwhile.
        if paused is not None and not big_body:
            paused.enter_context(dagbudget.collector_paused())
        return await asyncio.to_thread(check_off_loop)
    return check()


def generator_hook(engine: Engine) -> GeneratorHook:
    """Turn a successful generator's stdout into tasks between it and its children."""

    def hook(task: TaskNode, stdout: str) -> tuple[list[Any], list[tuple[str, str, bool]]]:
        run = task.run
        children = [child.name for child, _ in task.children]
        try:
            templates, edges = dagspec.generated_tasks(
                stdout, run.params, task.name, children, run.by_name
            )
        except BadRequest:
            raise
        except Exception as exc:
            # The engine only expects BadRequest here; anything else would leave the
            # generator running for ever, so it fails the generator instead.
            log.exception("reading generator output failed", run=run.id, task=task.name)
            raise BadRequest(f"the output could not be read: {exc}") from exc
        errors = engine.refusal(templates)
        if errors:
            raise BadRequest("a generated task can never run on this host", details=errors)
        return templates, edges

    return hook


async def wait_ended(engine: Engine, awaitable: Any) -> None:
    """Let a kill finish (grace period, then hard kill) before answering, within bounds."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(awaitable, engine.settings.kill_grace + KILL_SLACK)


# -- routes -------------------------------------------------------------------------------


@routes.get("/v1/dagruns")
@access("read")
async def list_runs(request: web.Request) -> web.Response:
    """Runs still queued or running; every run with ``all=1``."""
    counts = request.app[COUNTS]
    known = counts.known()  # counted as they were committed: not read from every task row
    pending = tuple(counts.pending)
    found = await request.app[SERVICES].store.read(
        dq.list_runs, query_bool(request, "all"), tuple(known), pending
    )
    uncounted = []
    for r in found:
        tally = known.get(r.run_id)
        if tally is None and r.uuid in pending:  # being submitted, or counted since
            tally = counts.known().get(r.run_id)
            first = counts.first_counts(r.uuid)
            if tally is None and first is not None:
                r.task_counts = first
            elif tally is None:
                uncounted.append(r)  # it ended meanwhile: counted in the store
        if tally is not None:
            r.task_counts = counts.summary(tally)
            r.last_update = max(r.last_update, tally.last)
    if uncounted:
        got = await request.app[SERVICES].store.read(dq.task_counts, [r.run_id for r in uncounted])
        for r in uncounted:
            r.task_counts, last = got[r.run_id]
            r.last_update = max(r.last_update, last)
    return json_response([summary_json(r) for r in found])


@routes.post("/v1/dagrun")
@routes.post("/v1/dagrun/")
@access("admin")
@idempotent(DAGRUN)
async def submit(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    numbers: list[int] = []
    counts = request.app[COUNTS]
    with contextlib.ExitStack() as paused:
        spec = await checked_spec(request, paused=paused)
        assert spec is not None
        plan = RunPlan(
            kind=RunKind.DAG, name=spec.tag, trigger=Trigger.API, uuid=str(uuid.uuid4()),
            tasks=spec.tasks, params=spec.parameters,
        )  # fmt: skip
        ready = sum(1 for t in plan.tasks if not t.parents)
        counts.submitting(plan.uuid, ready, len(plan.tasks))
        paused.callback(counts.submitted, plan.uuid)
        run = await svc.engine.submit(
            plan, also=lambda db, run_id: numbers.append(dq.number_run(db, run_id))
        )
        counts.stored(run, ready)
        if len(plan.tasks) > dagbudget.ON_LOOP_TASKS:
            dagbudget.kept_out(run.id)
    return json_response({"runID": numbers[0]})


@routes.post("/v1/dagrun/validate")
@access("read")
async def validate(request: web.Request) -> web.Response:
    """``{"valid": true}``, or 400 with ``{"valid": false, "errors": [...]}``."""
    try:
        await checked_spec(request, keep=False)
    except BadRequest as exc:
        body = {"valid": False, "error": exc.message, "errors": exc.details or [exc.message]}
        return json_response(body, status=400)
    return json_response({"valid": True})


@routes.get(r"/v1/dagrun/{runid:\d+}")
@access("read")
async def get_run(request: web.Request) -> web.Response:
    view = await request.app[SERVICES].store.read(dq.run_view, run_id_of(request))
    return json_response(run_json(view))


@routes.delete(r"/v1/dagrun/{runid:\d+}")
@access("admin")
async def kill_run(request: web.Request) -> web.Response:
    """Kill every running task of the run; answers once they are gone, with no body."""
    svc = request.app[SERVICES]
    row = await svc.store.read(dq.dag_run, run_id_of(request))
    run = await svc.engine.kill_run(row["id"], "the DAG run was killed by request")
    if run is not None:
        await wait_ended(svc.engine, run.done.wait())
    return web.Response(status=200)


@routes.get(r"/v1/dagrun/{runid:\d+}/state")
@access("read")
async def run_state(request: web.Request) -> web.Response:
    row = await request.app[SERVICES].store.read(dq.dag_run, run_id_of(request))
    return json_response({"state": RUN_STATES[row["state"]]})


@routes.patch(r"/v1/dagrun/{runid:\d+}/state/{state}")
@access("admin")
async def set_run_state(request: web.Request) -> web.Response:
    """QUEUED (or RUNNING) resumes an ERRORED or KILLED run; completed tasks are kept."""
    svc = request.app[SERVICES]
    number = run_id_of(request)
    wanted = request.match_info["state"].upper()
    row = await svc.store.read(dq.dag_run, number)
    current = RUN_STATES[row["state"]]
    if wanted not in RESUME_TO or current not in RESUMABLE:
        raise BadRequest(
            f"cannot set a {current} run to {request.match_info['state']}: only an ERRORED or"
            " KILLED run can be set to QUEUED (or RUNNING), which resumes it"
        )
    # Each unfinished task gets its full allowance again: maxRetries + 1 attempts.
    await svc.engine.restart(row["id"], lambda task: int(task.extra.get("maxRetries", 0)) + 1)
    return json_response({"runID": number})


@routes.get(r"/v1/dagrun/{runid:\d+}/task/{name}")
@access("read")
async def get_task(request: web.Request) -> web.Response:
    t = await request.app[SERVICES].store.read(
        dq.task, run_id_of(request), request.match_info["name"]
    )
    return json_response(task_json(t))


@routes.delete(r"/v1/dagrun/{runid:\d+}/task/{name}")
@access("admin")
async def kill_task(request: web.Request) -> web.Response:
    """Kill one task (its children then never run); answers once its process is gone, with
    no body."""
    svc = request.app[SERVICES]
    number = run_id_of(request)
    name = request.match_info["name"]
    await svc.store.read(dq.task_state, number, name)  # 404 for an unknown run or task
    row = await svc.store.read(dq.dag_run, number)
    run = svc.engine.runs.get(row["id"])
    node = run.by_name.get(name) if run is not None else None
    if node is not None:
        await svc.engine.kill_task(node, "the task was killed by request")
        live = node.live
        if live is not None and live.watcher is not None:
            await wait_ended(svc.engine, asyncio.shield(live.watcher))
    return web.Response(status=200)


@routes.get(r"/v1/dagrun/{runid:\d+}/task/{name}/state")
@access("read")
async def get_task_state(request: web.Request) -> web.Response:
    state = await request.app[SERVICES].store.read(
        dq.task_state, run_id_of(request), request.match_info["name"]
    )
    return json_response({"state": TASK_STATES[state]})


async def start(services: Services) -> None:
    services.engine.generator_hook = generator_hook(services.engine)
    services.engine.run_finished.append(lambda run: dagbudget.run_ended(run.id))
    dagbudget.watch_collections()


def setup(app: web.Application) -> None:
    counts = app[COUNTS] = dagcounts.Counts()

    async def start_counts(services: Services) -> None:
        counts.attach(services.engine)

    app.add_routes(routes)
    on_start(app, start)
    on_start(app, start_counts)
