"""OpenAPI declarations of the Work queue family (task_tracker), next to ``taskd.workqueue.routes``.

Worker routes authenticate with the ``X-Worker-ID`` / ``X-Secret`` headers (``auth="worker"``);
project management needs taskd's admin credential, reading it a viewer's.
"""

from __future__ import annotations

from taskd.http.openapi import Part
from taskd.http.openapi.schema import ANY, BOOL, INT, NUM, STR, Op, arr, enum, nullable, obj, ref
from taskd.workqueue.model import (
    INT32_MAX,
    INT64_MAX,
    INT64_MIN,
    MAX_BULK,
    MAX_RELEASE_BATCH,
    MAX_TEXT,
)

I64 = {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX}
ID = {"type": "integer", "minimum": 1, "maximum": INT64_MAX}
COUNT = {"type": "integer", "minimum": 0, "maximum": INT32_MAX}
TEXT = {"type": "string", "maxLength": MAX_TEXT}
RATE = {"type": "number", "minimum": 0, "maximum": 1e9, "description": "per second; 0 = no limit"}
PATH_ID = {"type": "string", "pattern": r"^[1-9][0-9]{0,17}$", "description": "a positive integer"}
U64 = {"type": "integer", "minimum": 0, "maximum": INT64_MAX}

# A project's settings, as created (name required) and as updated (only the fields given).
PROJECT_NAME = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
PROJECT_FIELDS = {
    "priority": nullable(U64),
    "clone_url": nullable(TEXT),
    "git_repo": nullable(TEXT),
    "version": nullable(TEXT),
    "motd": nullable(STR),
    "public": nullable(BOOL),
    "hidden": nullable(BOOL),
    "chain": nullable(U64),
    "paused": nullable(BOOL),
    "assign_rate": nullable(RATE),
    "submit_rate": nullable(RATE),
}
PROJECT_RULES = (
    "A project cannot be both public and hidden; `chain` names an existing project (0 = none)."
    " An update changes only the fields given."
)


def reply(content: dict | None = None, *, ok_only: bool = False) -> dict:
    """The queue's envelope around ``content``."""
    props: dict = {"ok": enum(True) if ok_only else BOOL, "message": STR}
    if content is not None:
        props["content"] = content
    return obj(props, ["ok"])


SCHEMAS = {
    "QueueWorker": obj(
        {"id": INT, "created": INT, "alias": STR, "paused": BOOL},
        ["id", "created", "alias", "paused"],
    ),
    "QueueNewWorker": obj(
        {"id": INT, "created": INT, "alias": STR, "secret": STR, "paused": BOOL},
        ["id", "created", "alias", "secret", "paused"],
        description="The secret appears in this reply and nowhere else, ever.",
    ),
    "QueueProject": obj(
        {
            "id": INT,
            "priority": INT,
            "name": STR,
            "clone_url": STR,
            "git_repo": STR,
            "version": STR,
            "motd": STR,
            "public": BOOL,
            "hidden": BOOL,
            "chain": INT,
            "paused": BOOL,
            "assign_rate": NUM,
            "submit_rate": NUM,
        },
        ["id", "name", "priority", "public", "hidden", "paused"],
    ),
    "QueueProjectInput": obj(
        {"name": PROJECT_NAME, **PROJECT_FIELDS}, ["name"], description=PROJECT_RULES
    ),
    "QueueProjectUpdate": obj(
        {"name": nullable(PROJECT_NAME), **PROJECT_FIELDS}, (), description=PROJECT_RULES
    ),
    "QueueNewTask": obj(
        {
            "project": ID,
            "recipe": {"type": "string", "minLength": 1},
            "priority": nullable(I64),
            "max_retries": nullable(COUNT),
            "max_assign_time": nullable(COUNT),
            "verification_count": nullable(COUNT),
            "hash64": nullable(I64),
            "hash_u64": nullable(I64),
            "unique_string": nullable(STR),
        },
        ["project", "recipe"],
        description="`hash64` (or `hash_u64`) or `unique_string` de-duplicates per project.",
    ),
    "QueueTask": obj(
        {
            "id": INT,
            "priority": INT,
            "assignee": nullable(INT),
            "retries": INT,
            "max_retries": INT,
            "status": enum(1, 2, 3),
            "recipe": STR,
            "max_assign_time": INT,
            "assign_time": nullable(INT),
            "verification_count": INT,
            "project": ref("QueueProject"),
        },
        ["id", "recipe", "status", "project"],
    ),
    "QueueSnapshot": obj(
        {
            "new_task_count": INT,
            "failed_task_count": INT,
            "closed_task_count": INT,
            "worker_access_count": INT,
            "awaiting_verification_count": INT,
            "time_stamp": INT,
        },
        ["time_stamp"],
    ),
}

WORKER = "worker"
PROJECT = {"id": PATH_ID}
PROJECT_LINK = {"id": "$response.body#/content/id"}
PROJECT_LINKS = {
    "GetProject": {"operationId": "get_project", "parameters": PROJECT_LINK},
    "UpdateProject": {"operationId": "update_project", "parameters": PROJECT_LINK},
    "AccessList": {"operationId": "access_list", "parameters": PROJECT_LINK},
    "Assignees": {"operationId": "assignees", "parameters": PROJECT_LINK},
    "Monitoring": {"operationId": "monitoring", "parameters": PROJECT_LINK},
    "ProjectSecret": {"operationId": "get_secret", "parameters": PROJECT_LINK},
    "SetProjectSecret": {"operationId": "set_secret", "parameters": PROJECT_LINK},
    "LeaseTask": {"operationId": "get_task", "parameters": {"project": PROJECT_LINK["id"]}},
    "ResetFailed": {"operationId": "reset_failed_tasks", "parameters": PROJECT_LINK},
    "Reclaim": {"operationId": "reclaim_assigned_tasks", "parameters": PROJECT_LINK},
    "HardReset": {"operationId": "hard_reset", "parameters": PROJECT_LINK},
    "RequestAccess": {
        "operationId": "request_access",
        "requestBody": {"project": PROJECT_LINK["id"], "assign": True, "submit": True},
    },
}
AFFECTED = reply(obj({"affected_tasks": INT}, ["affected_tasks"]))

OPERATIONS = {
    "POST /worker/create": Op(
        "Register a worker",
        "Needs the admin credential unless the server runs with --queue-open-registration.",
        body=obj({"alias": nullable(TEXT)}),
        body_required=False,
        response=reply(obj({"worker": ref("QueueNewWorker")}, ["worker"])),
        auth="admin",
        links={
            "GetWorker": {
                "operationId": "get_worker",
                "parameters": {"id": "$response.body#/content/worker/id"},
            }
        },
    ),
    "POST /worker/update": Op(
        "Change the calling worker's alias",
        body=obj({"alias": TEXT}, ["alias"]),
        response=reply(),
        auth=WORKER,
    ),
    "GET /worker/get/{id}": Op(
        "Get a worker (never its secret)",
        path={"id": PATH_ID},
        response=reply(obj({"worker": ref("QueueWorker")}, ["worker"])),
    ),
    "POST /worker/set_paused": Op(
        "Pause a worker, or let it work again",
        body=obj({"worker": ID, "paused": BOOL}, ["worker", "paused"]),
        response=reply(),
    ),
    "GET /worker/stats": Op(
        "Workers with the number of tasks each closed",
        query={"limit": {"type": "integer", "minimum": 1, "maximum": INT64_MAX}},
        response=reply(obj({"stats": arr({"type": "object"})}, ["stats"])),
    ),
    "POST /task/submit": Op(
        "Submit a task (needs SUBMIT access on the project)",
        body=ref("QueueNewTask"),
        response=reply(),
        auth=WORKER,
        errors=(429,),
        links={
            "LeaseTask": {
                "operationId": "get_task",
                "parameters": {"project": "$request.body#/project"},
            }
        },
    ),
    "POST /task/bulk_submit": Op(
        "Submit many tasks of one project, all or none",
        "The body is the bare array of submit requests (as task_tracker's document shows) or"
        ' `{"requests": [...]}` (as its code reads it).',
        body={
            "oneOf": [
                arr(ref("QueueNewTask"), minItems=1, maxItems=MAX_BULK),
                obj(
                    {"requests": arr(ref("QueueNewTask"), minItems=1, maxItems=MAX_BULK)},
                    ["requests"],
                ),
            ]
        },
        response=reply(),
        auth=WORKER,
        errors=(429,),
    ),
    "GET /task/get/{project}": Op(
        "Lease the project's next task",
        "200 with `ok` false and a message when there is none. Bad or missing worker"
        " credentials are answered 403 here and on /task/release (401 on the other worker"
        " routes), as task_tracker answers them. Extension: with `count` (1-100) up to that"
        " many tasks are leased in one commit and answered as `tasks` (it costs `count` tokens"
        " of the project's assign rate); without it the answer is task_tracker's.",
        path={"project": PATH_ID},
        query={"count": {"type": "integer", "minimum": 1, "maximum": 100}},
        response=reply(
            {
                "oneOf": [
                    obj({"task": ref("QueueTask")}, ["task"]),
                    obj({"tasks": arr(ref("QueueTask"), minItems=1)}, ["tasks"]),
                ]
            }
        ),
        auth=WORKER,
        errors=(429,),
        links={
            "Release": {
                "operationId": "release_task",
                "requestBody": {"task_id": "$response.body#/content/task/id", "result": 0},
            }
        },
    ),
    "POST /task/release": Op(
        "Report a leased task done (0), failed (1) or skipped (2)",
        body=obj(
            {
                "task_id": ID,
                "result": {"type": "integer", "enum": [0, 1, 2]},
                "verification": nullable(I64),
            },
            ["task_id", "result"],
        ),
        response=reply(obj({"updated": BOOL}, ["updated"])),
        auth=WORKER,
    ),
    "POST /task/bulk_release": Op(
        "Report the results of several leased tasks at once, all or none",
        "Extension: up to 100 releases in one request, applied in one commit. Each item means"
        " what a /task/release body means. Nothing is applied unless every task exists (else"
        " 404) and is held by the calling worker under a live lease (else 409, naming the"
        " tasks that are not: send the others again without them); an empty or over-long"
        " list, a bad item or a task named twice is a 400. The answer gives, in the order"
        " sent, each task's `updated` as /task/release answers it (false, with a message, for"
        " a verified task still waiting for other workers to agree). Bad or missing worker"
        " credentials are answered 403, as on /task/release.",
        body=obj(
            {
                "releases": arr(
                    obj(
                        {
                            "task_id": ID,
                            "result": {"type": "integer", "enum": [0, 1, 2]},
                            "verification": nullable(I64),
                        },
                        ["task_id", "result"],
                    ),
                    minItems=1,
                    maxItems=MAX_RELEASE_BATCH,
                )
            },
            ["releases"],
        ),
        response=reply(
            obj(
                {
                    "results": arr(
                        obj(
                            {"task_id": INT, "updated": BOOL, "message": STR},
                            ["task_id", "updated"],
                        )
                    )
                },
                ["results"],
            ),
            ok_only=True,
        ),
        auth=WORKER,
        errors=(409,),
        extension=True,
    ),
    "POST /log/{level}": Op(
        "Store a log entry of the calling worker",
        path={"level": enum("trace", "info", "warn", "error")},
        body=obj(
            {
                "scope": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
                "message": {"type": "string", "minLength": 1},
                "timestamp": {"type": "integer", "minimum": 1, "maximum": INT64_MAX},
            },
            ["scope", "message", "timestamp"],
        ),
        response=reply(),
        auth=WORKER,
    ),
    "POST /logs": Op(
        "Worker log entries of one level since a time",
        body=obj(
            {
                "level": {"type": "integer", "minimum": 1, "maximum": 7},
                "since": nullable({"type": "integer", "minimum": 0, "maximum": INT64_MAX}),
                "limit": nullable({"type": "integer", "minimum": 1, "maximum": 10_000}),
            },
            ["level"],
        ),
        response=reply(obj({"logs": arr({"type": "object"})}, ["logs"])),
    ),
    "POST /project/create": Op(
        "Create a project",
        body=ref("QueueProjectInput"),
        response=reply(obj({"id": INT}, ["id"])),
        errors=(409,),
        links=PROJECT_LINKS,
    ),
    "POST /project/update/{id}": Op(
        "Change the given settings of a project",
        path=PROJECT,
        body=ref("QueueProjectUpdate"),
        response=reply(),
        errors=(409,),
    ),
    "GET /project/get/{id}": Op(
        "Get a project (hidden ones only for admins and viewers)",
        path=PROJECT,
        response=reply(ref("QueueProject")),
        auth="optional",
    ),
    "GET /project/list": Op(
        "Every project by name (hidden ones only for admins and viewers)",
        response=reply(obj({"projects": arr(ref("QueueProject"))}, ["projects"])),
        auth="optional",
    ),
    "POST /project/request_access": Op(
        "Ask for ASSIGN and/or SUBMIT access to a project",
        "At least one of `assign` and `submit` must be true.",
        body=obj({"project": ID, "assign": nullable(BOOL), "submit": nullable(BOOL)}, ["project"]),
        response=reply(),
        auth=WORKER,
        links={
            # Once an admin accepted the request (accept_request), the worker may submit.
            "SubmitTask": {
                "operationId": "submit_task",
                "requestBody": {"project": "$request.body#/project", "recipe": "a task"},
            }
        },
    ),
    "POST /project/accept_request/{id}/{wid}": Op(
        "Grant a worker's pending access request",
        path={"id": PATH_ID, "wid": PATH_ID},
        response=reply(),
    ),
    "POST /project/reject_request/{id}/{wid}": Op(
        "Refuse a pending request, or revoke access already granted",
        path={"id": PATH_ID, "wid": PATH_ID},
        response=reply(),
    ),
    "GET /project/access_list/{id}": Op(
        "Access requests and grants of a project",
        path=PROJECT,
        response=reply(obj({"accesses": arr({"type": "object"})}, ["accesses"])),
    ),
    "GET /project/assignees/{id}": Op(
        "How many tasks of the project each worker holds now",
        path=PROJECT,
        response=reply(obj({"assignees": arr({"type": "object"})}, ["assignees"])),
    ),
    "POST /project/reset_failed_tasks/{id}": Op(
        "Make the project's FAILED tasks NEW again", path=PROJECT, response=AFFECTED
    ),
    "POST /project/reclaim_assigned_tasks/{id}": Op(
        "Take back every lease of the project", path=PROJECT, response=AFFECTED
    ),
    "POST /project/hard_reset/{id}": Op(
        "Delete every task of the project", path=PROJECT, response=AFFECTED
    ),
    "GET /project/monitoring/{id}": Op(
        "The project's counts now, then the latest snapshots",
        path=PROJECT,
        query={"count": {"type": "integer", "minimum": 1, "maximum": 999}},
        response=reply(obj({"snapshots": arr(ref("QueueSnapshot"))}, ["snapshots"])),
    ),
    "GET /project/monitoring-between/{id}": Op(
        "Snapshots of the project's counts taken between two times (epoch seconds)",
        path=PROJECT,
        query={
            "from": {"type": "integer", "minimum": 0, "maximum": INT64_MAX},
            "to": {"type": "integer", "minimum": 0, "maximum": INT64_MAX},
        },
        required_query=("from", "to"),
        response=reply(obj({"snapshots": arr(ref("QueueSnapshot"))}, ["snapshots"])),
    ),
    "GET /project/secret/{id}": Op(
        "The project's secret (admin, or a worker with ASSIGN access)",
        path=PROJECT,
        response=reply(obj({"secret": STR}, ["secret"])),
        auth="admin-or-worker",
    ),
    "POST /project/secret/{id}": Op(
        "Set the project's secret",
        path=PROJECT,
        body=obj({"secret": STR}, ["secret"]),
        response=reply(),
    ),
}

# The family's envelope (``routes.ENVELOPE``).
SCHEMAS["QueueEnvelope"] = obj(
    {"ok": BOOL, "message": STR, "content": ANY, "rate_limit_delay": NUM},
    ["ok"],
    description="Every reply of the work queue; errors have `ok` false.",
)

PART = Part(
    "workqueue",
    "Work queue (task_tracker)",
    "Projects of opaque tasks leased by workers.",
    OPERATIONS,
    SCHEMAS,
)
