"""OpenAPI declarations of the Container tasks family (Drove), next to its routes."""

from __future__ import annotations

from taskd.containertasks.routes import MAX_MS
from taskd.containertasks.spec import LOG_FILES, MAX_ARGS, MIN_MEMORY_MB, STATES
from taskd.http.openapi import Part
from taskd.http.openapi.schema import ANY, INT, STR, Op, arr, count, enum, nullable, obj, ref

ID = {"type": "string", "pattern": r"^[a-zA-Z0-9_-]+$"}
DURATION = {
    "type": "string",
    "pattern": r"^0*[1-9][0-9]*\s*(ns|us|ms|s|m|min|mins|h|d|(nano|micro|milli)?seconds?"
    r"|minutes?|hours?|days?)$",
    "description": "A Drove duration such as `5m` or `100 seconds`; more than 0, at most 365 days.",
}
STRING_MAP = {"type": "object", "additionalProperties": STR}
CPU = obj(
    {"type": enum("CPU"), "count": {"type": "integer", "minimum": 1}},
    ["type", "count"],
    closed=True,
)
MEMORY = obj(
    {"type": enum("MEMORY"), "sizeInMB": {"type": "integer", "minimum": MIN_MEMORY_MB}},
    ["type", "sizeInMB"],
    closed=True,
)


def envelope(data: dict) -> dict:
    """A SUCCESS reply in Drove's envelope."""
    return obj(
        {"status": enum("SUCCESS"), "data": data, "message": STR}, ["status", "data", "message"]
    )


def failed(data: dict | None = None) -> dict:
    """A FAILED reply with HTTP 200: Drove's answer for a task that is not there."""
    props = {"status": enum("FAILED"), "message": STR}
    if data is not None:
        props["data"] = data
    return obj(props, ["status", "message"])


OP_SPEC = obj(
    {
        "timeout": DURATION,
        "parallelism": nullable({"type": "integer", "minimum": 1, "maximum": 512}),
        "failureStrategy": nullable(enum("STOP", "ROLLBACK")),
    },
    ["timeout"],
    closed=True,
    description="`timeout`: how long a KILL waits for the task to stop.",
)

SCHEMAS = {
    "DroveTaskSpec": obj(
        {
            "sourceAppName": ID,
            "taskId": ID,
            "executable": obj(
                {
                    "type": nullable(enum("DOCKER")),
                    "url": {"type": "string", "pattern": r"^\S+$"},
                    "dockerPullTimeout": nullable(DURATION),
                },
                ["url"],
                closed=True,
            ),
            "resources": {
                "description": "Exactly one CPU and one MEMORY entry, in either order.",
                "oneOf": [
                    {"type": "array", "prefixItems": [CPU, MEMORY], "items": False, "minItems": 2},
                    {"type": "array", "prefixItems": [MEMORY, CPU], "items": False, "minItems": 2},
                ],
            },
            "volumes": nullable(
                arr(
                    obj(
                        {
                            "pathInContainer": STR,
                            "pathOnHost": STR,
                            "mode": enum("READ_WRITE", "READ_ONLY"),
                        },
                        ["pathInContainer", "pathOnHost", "mode"],
                        closed=True,
                        description="Host paths only from the configured allow-list.",
                    )
                )
            ),
            "env": nullable(STRING_MAP),
            "args": nullable(arr(STR, maxItems=MAX_ARGS)),
            "tags": nullable(STRING_MAP),
            "logging": nullable({"type": "object"}),
            "placementPolicy": nullable({"type": "object"}),
        },
        ["sourceAppName", "taskId", "executable", "resources"],
        closed=True,
    ),
    "DroveOperation": {
        "oneOf": [
            obj(
                {"type": enum("CREATE"), "spec": ref("DroveTaskSpec"), "opSpec": OP_SPEC},
                ["type", "spec", "opSpec"],
                closed=True,
            ),
            obj(
                {"type": enum("KILL"), "sourceAppName": ID, "taskId": ID, "opSpec": OP_SPEC},
                ["type", "sourceAppName", "taskId", "opSpec"],
                closed=True,
            ),
        ]
    },
    "DroveTaskInfo": obj(
        {
            "sourceAppName": STR,
            "taskId": STR,
            "instanceId": STR,
            "executorId": STR,
            "hostname": STR,
            "executable": obj({"type": STR, "url": STR, "dockerPullTimeout": STR}),
            "resources": arr({"type": "object"}),
            "volumes": arr({"type": "object"}),
            "env": STRING_MAP,
            "state": enum(*STATES),
            "metadata": {"type": "object"},
            "loggingSpec": ANY,
            "taskResult": obj(
                {
                    "status": enum("SUCCESSFUL", "FAILED", "CANCELLED", "LOST", "TIMED_OUT"),
                    "exitCode": nullable(INT),
                },
                ["status"],
            ),
            "errorMessage": STR,
            "created": INT,
            "updated": INT,
        },
        ["sourceAppName", "taskId", "instanceId", "state", "created", "updated"],
    ),
    "DroveTaskSearch": obj(
        {
            "sourceAppName": nullable(ID),
            "taskSearchAppName": nullable(ID),
            "taskId": nullable(ID),
            "taskSearchTaskID": nullable(ID),
            "taskIdPrefix": nullable(ID),
            "states": nullable(arr(enum(*STATES))),
            "from": nullable({"type": "integer", "minimum": 0, "maximum": MAX_MS}),
            "to": nullable({"type": "integer", "minimum": 0, "maximum": MAX_MS}),
            "limit": nullable({"type": "integer", "minimum": 1, "maximum": 1000}),
        },
        closed=True,
        description="Every field optional; `from` inclusive and `to` exclusive, epoch ms.",
    ),
}

TASK_PATH = {"sourceAppName": STR, "taskId": STR}
FILE = {**TASK_PATH, "fileName": enum(*LOG_FILES)}
TASK_LINK = {
    "sourceAppName": "$request.body#/spec/sourceAppName",
    "taskId": "$request.body#/spec/taskId",
}

OPERATIONS = {
    "GET /apis/v1/ping": Op(
        "Check the server answers",
        "Drove's clients call it first, to validate the endpoint and credentials.",
        response=envelope(enum("pong")),
    ),
    "POST /apis/v1/tasks/validate/spec": Op(
        "Validate a task spec without creating the task",
        "Checks a bare TaskSpec as CREATE does (not whether its task id is taken).",
        body=ref("DroveTaskSpec"),
        response=obj({"status": enum("SUCCESS"), "message": STR}, ["status", "message"]),
    ),
    "POST /apis/v1/tasks/operations": Op(
        "CREATE a task, or KILL one",
        "A KILL answers once the task stopped, or 504 when it has not stopped within"
        " `opSpec.timeout` (the kill goes on). `(sourceAppName, taskId)` is unique.",
        body=ref("DroveOperation"),
        response=envelope(obj({"taskId": STR}, ["taskId"])),
        errors=(504,),
        links={
            "GetTask": {"operationId": "get_task", "parameters": TASK_LINK},
            "DeleteTask": {"operationId": "delete_task", "parameters": TASK_LINK},
            "ListLogFiles": {"operationId": "log_list", "parameters": TASK_LINK},
        },
    ),
    "GET /apis/v1/tasks": Op(
        "List active tasks (pending, provisioning or running)",
        response=envelope(arr(ref("DroveTaskInfo"))),
    ),
    "GET /apis/v1/tasks/{sourceAppName}/instances/{taskId}": Op(
        "Get one task in any state",
        "A task that does not exist answers 200 with status FAILED and the message"
        " `No such task instance APP/TID`, as Drove does.",
        path=TASK_PATH,
        response={"oneOf": [envelope(ref("DroveTaskInfo")), failed()]},
    ),
    "DELETE /apis/v1/tasks/{sourceAppName}/instances/{taskId}": Op(
        "Delete a finished task's record and output",
        "What cannot be deleted (no such task, or a task still active, which must be killed"
        ' first) answers 200 with status FAILED and `{"deleted": false}`, as Drove does.',
        path=TASK_PATH,
        response={
            "oneOf": [
                envelope(obj({"deleted": enum(True)}, ["deleted"])),
                failed(obj({"deleted": enum(False)}, ["deleted"])),
            ]
        },
        extension=True,
    ),
    "POST /apis/v1/tasks/search": Op(
        "Search tasks, newest first",
        "A JSON search, or Drove's form fields `taskSearchAppName` and `taskSearchTaskID`.",
        body=ref("DroveTaskSearch"),
        body_required=False,
        form=obj(
            {"taskSearchAppName": ID, "taskSearchTaskID": ID},
            ["taskSearchAppName", "taskSearchTaskID"],
        ),
        response=envelope(arr(ref("DroveTaskInfo"))),
    ),
    "GET /apis/v1/logfiles/tasks/{sourceAppName}/{taskId}/list": Op(
        "The task's log files",
        "None before its container was started. No envelope.",
        path=TASK_PATH,
        response=obj({"files": arr(enum(*LOG_FILES))}, ["files"]),
    ),
    "GET /apis/v1/logfiles/tasks/{sourceAppName}/{taskId}/read/{fileName}": Op(
        "Read part of a log file",
        "`length` bytes from `offset`; offset -1 (the default) answers no data and the end"
        " offset, to start tailing. No envelope.",
        path=FILE,
        query={
            "offset": count(-1),
            "length": count(),
        },
        response=obj({"data": STR, "offset": INT}, ["data", "offset"]),
    ),
    "GET /apis/v1/logfiles/tasks/{sourceAppName}/{taskId}/download/{fileName}": Op(
        "Download a whole log file", path=FILE, response=STR, response_type="text/plain"
    ),
}

# The family's envelope (``routes.ENVELOPE``).
SCHEMAS["DroveEnvelope"] = obj(
    {"status": enum("SUCCESS", "FAILED"), "data": ANY, "message": STR},
    ["status", "message"],
    description="Every reply under /apis; errors have status FAILED and validation"
    " errors as `data.validationErrors`.",
)

# Its operation ids keep the name Drove's routes had before the families became packages.
PART = Part(
    "tasks",
    "Container tasks (Drove)",
    "One-off container tasks created by operations.",
    OPERATIONS,
    SCHEMAS,
)
