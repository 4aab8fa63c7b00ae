"""Work queue routes of projects (task_tracker): create, settings, access, maintenance,
monitoring and secrets. Admin unless a route says otherwise; the envelope and helpers are
those of ``taskd.workqueue.routes``.
"""

from __future__ import annotations

from aiohttp import web

from taskd.errors import BadRequest
from taskd.http.guard import access, principal_of
from taskd.http.jsonio import query_int
from taskd.workqueue.model import INT64_MAX, bool_field, int_field, parse_project, str_field
from taskd.workqueue.routes import body_of, path_id, queue_of, reply, worker_of

routes = web.RouteTableDef()


@routes.post("/project/create")
async def create_project(request: web.Request) -> web.Response:
    """Create a project (admin)."""
    fields = parse_project(await body_of(request), partial=False)
    return reply({"id": await queue_of(request).projects.create(fields)})


@routes.post("/project/update/{id}")
async def update_project(request: web.Request) -> web.Response:
    """Change the given settings of a project (admin)."""
    pid = path_id(request, "id", "project")
    fields = parse_project(await body_of(request), partial=True)
    await queue_of(request).projects.update(pid, fields)
    return reply()


@routes.get("/project/get/{id}")
@access("public")
async def get_project(request: web.Request) -> web.Response:
    """A project; hidden ones only for admins and viewers."""
    pid = path_id(request, "id", "project")
    who = await principal_of(request)
    # The seed's document puts the project's fields straight under "content".
    return reply(await queue_of(request).projects.get(pid, can_read=who.can_read))


@routes.get("/project/list")
@access("public")
async def list_projects(request: web.Request) -> web.Response:
    """Every project by name; hidden ones only for admins and viewers."""
    who = await principal_of(request)
    projects = await queue_of(request).projects.list_all(can_read=who.can_read)
    return reply({"projects": projects})


@routes.post("/project/request_access")
@access("public")
async def request_access(request: web.Request) -> web.Response:
    """Ask for ASSIGN and/or SUBMIT access to a project (worker)."""
    worker = await worker_of(request)
    body = await body_of(request)
    pid = int_field(body, "project", low=1)
    assign, submit = bool_field(body, "assign", False), bool_field(body, "submit", False)
    await queue_of(request).projects.request_access(worker, pid, assign, submit)
    return reply()


@routes.post("/project/accept_request/{id}/{wid}")
async def accept_request(request: web.Request) -> web.Response:
    """Grant a worker's pending access request (admin)."""
    pid, wid = path_id(request, "id", "project"), path_id(request, "wid", "worker")
    await queue_of(request).projects.accept_request(pid, wid)
    return reply()


@routes.post("/project/reject_request/{id}/{wid}")
async def reject_request(request: web.Request) -> web.Response:
    """Refuse a pending request, or revoke access already granted (admin)."""
    pid, wid = path_id(request, "id", "project"), path_id(request, "wid", "worker")
    await queue_of(request).projects.reject_request(pid, wid)
    return reply()


@routes.get("/project/access_list/{id}")
@access("read")
async def access_list(request: web.Request) -> web.Response:
    """Access requests and grants of a project."""
    pid = path_id(request, "id", "project")
    return reply({"accesses": await queue_of(request).projects.access_list(pid)})


@routes.get("/project/assignees/{id}")
@access("read")
async def assignees(request: web.Request) -> web.Response:
    """How many tasks of the project each worker holds now."""
    pid = path_id(request, "id", "project")
    return reply({"assignees": await queue_of(request).projects.assignees(pid)})


@routes.post("/project/reset_failed_tasks/{id}")
async def reset_failed_tasks(request: web.Request) -> web.Response:
    """Make the project's FAILED tasks NEW again (admin)."""
    count = await queue_of(request).projects.reset_failed(path_id(request, "id", "project"))
    return reply({"affected_tasks": count})


@routes.post("/project/reclaim_assigned_tasks/{id}")
async def reclaim_assigned_tasks(request: web.Request) -> web.Response:
    """Take back every lease of the project (admin)."""
    pid = path_id(request, "id", "project")
    return reply({"affected_tasks": await queue_of(request).projects.reclaim_assigned(pid)})


@routes.post("/project/hard_reset/{id}")
async def hard_reset(request: web.Request) -> web.Response:
    """Delete every task of the project (admin)."""
    count = await queue_of(request).projects.hard_reset(path_id(request, "id", "project"))
    return reply({"affected_tasks": count})


@routes.get("/project/monitoring/{id}")
@access("read")
async def monitoring(request: web.Request) -> web.Response:
    """The project's counts now, then the latest snapshots (``count`` in all)."""
    pid = path_id(request, "id", "project")
    count = query_int(request, "count", 10, minimum=1)
    if count > 999:
        raise BadRequest("count must be between 1 and 999")
    return reply({"snapshots": await queue_of(request).projects.monitoring(pid, count)})


@routes.get("/project/monitoring-between/{id}")
@access("read")
async def monitoring_between(request: web.Request) -> web.Response:
    """Snapshots of the project's counts taken between ``from`` and ``to``."""
    pid = path_id(request, "id", "project")
    since, until = query_int(request, "from", minimum=0), query_int(request, "to", minimum=0)
    if since is None or until is None or since > until or until > INT64_MAX:
        raise BadRequest("from and to (epoch seconds, from <= to) are required")
    snapshots = await queue_of(request).projects.monitoring_between(pid, since, until)
    return reply({"snapshots": snapshots})


@routes.get("/project/secret/{id}")
@access("public")
async def get_secret(request: web.Request) -> web.Response:
    """The project's secret, for the admin or a worker with ASSIGN access."""
    pid = path_id(request, "id", "project")
    who = await principal_of(request)
    worker = None if who.is_admin else await worker_of(request)
    return reply({"secret": await queue_of(request).projects.secret(pid, worker)})


@routes.post("/project/secret/{id}")
async def set_secret(request: web.Request) -> web.Response:
    """Set the project's secret (admin)."""
    pid = path_id(request, "id", "project")
    secret = str_field(await body_of(request), "secret", max_len=None)
    await queue_of(request).projects.set_secret(pid, secret)
    return reply()
