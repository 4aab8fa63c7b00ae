"""OpenAPI declarations of the DAG runs family (Daggy), for the routes of ``taskd.dagruns.routes``.

Kept apart from that module (owned by its family) and read by ``taskd.http.openapi``.
"""

from __future__ import annotations

from taskd.http.openapi import Part
from taskd.http.openapi.schema import ANY, BOOL, INT, STR, Op, arr, enum, nullable, obj, ref

TASK_STATES = ("QUEUED", "RUNNING", "RETRY", "COMPLETED", "ERRORED", "KILLED")
RUN_STATES = ("QUEUED", "RUNNING", "COMPLETED", "ERRORED", "KILLED")
TASK_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9_.\-]{1,200}$"}
NS = {"type": "string", "pattern": r"^[0-9]+$", "description": "nanoseconds since the epoch"}
# Daggy sends numbers as strings ("1"); both are accepted.


def numeric(maximum: float, *, integer: bool = False, positive: bool = False) -> dict:
    """A number from 0 (or above 0) to ``maximum``, or a string of one (Daggy sends "1")."""
    number: dict = {"type": "integer" if integer else "number", "maximum": maximum}
    number["exclusiveMinimum" if positive else "minimum"] = 0
    digits = r"^\s*[0-9]+\s*$" if integer else r"^\s*[0-9]+(\.[0-9]+)?\s*$"
    text = {"type": "string", "pattern": digits, "description": f"a number up to {maximum:,}"}
    return {"anyOf": [number, text]}


NAMES = nullable(arr(STR))

SCHEMAS = {
    "DaggyJob": obj(
        {
            "command": arr(STR, minItems=1),
            "environment": nullable(arr({"type": "string", "pattern": "^[^=]+="})),
            "cores": numeric(4096),
            "memoryMB": numeric(1 << 30, integer=True),
            "timeoutSeconds": numeric(366 * 86400, positive=True),
            "image": {"type": "string", "pattern": r"\S"},
            "runner": {"enum": ["docker", "swarm"]},
            "constraints": arr(STR),
        },
        ["command"],
        closed=True,
        description="`command` is an argv for the local runner; with `image` it runs on docker"
        " (extension), or on a Docker Swarm with `runner: swarm` (placed by `constraints` such"
        " as `node.labels.gpu==1`). `{{NAME}}` placeholders in command and environment are"
        " expanded.",
    ),
    "DaggyTask": obj(
        {
            "job": ref("DaggyJob"),
            "maxRetries": numeric(1000, integer=True),
            "retryIntervalSeconds": numeric(7 * 86400),
            "parents": NAMES,
            "children": NAMES,
            "isGenerator": nullable(BOOL),
        },
        ["job"],
        closed=True,
    ),
    "DaggyDag": obj(
        {
            "tag": nullable(STR),
            "parameters": nullable(
                {
                    "type": "object",
                    "additionalProperties": {
                        "anyOf": [
                            STR,
                            {"type": "number"},
                            arr({"anyOf": [STR, {"type": "number"}]}, minItems=1),
                        ]
                    },
                }
            ),
            "tasks": {
                "type": "object",
                "minProperties": 1,
                "propertyNames": TASK_NAME,
                "additionalProperties": ref("DaggyTask"),
            },
        },
        ["tasks"],
        closed=True,
        description="Edges name tasks of the DAG; cycles are refused. A generator's stdout is"
        " a JSON object of new tasks, inserted between it and its children.",
    ),
    "DaggyTaskDetails": obj(
        {
            "maxRetries": ANY,
            "retryIntervalSeconds": ANY,
            "job": {"type": "object"},
            "children": arr(STR),
            "parents": arr(STR),
            "isGenerator": BOOL,
        },
        ["maxRetries", "retryIntervalSeconds", "job", "children", "parents", "isGenerator"],
    ),
    "DaggyAttempt": obj(
        {
            "startTime": NS,
            "stopTime": NS,
            "rc": INT,
            "outputLog": STR,
            "errorLog": STR,
            "executorLog": STR,
        },
        ["startTime", "stopTime", "rc", "outputLog", "errorLog", "executorLog"],
    ),
    "DaggyRun": obj(
        {
            "runID": INT,
            "tag": STR,
            "tasks": {"type": "object", "additionalProperties": ref("DaggyTaskDetails")},
            "taskStates": {"type": "object", "additionalProperties": enum(*TASK_STATES)},
            "taskAttempts": {"type": "object", "additionalProperties": arr(ref("DaggyAttempt"))},
            "dagStateChanges": arr(
                obj({"time": NS, "state": enum(*RUN_STATES)}, ["time", "state"])
            ),
        },
        ["runID", "tag", "tasks", "taskStates", "taskAttempts", "dagStateChanges"],
    ),
    "DaggyRunSummary": obj(
        {
            "runID": INT,
            "tag": STR,
            "state": enum(*RUN_STATES),
            "startTime": NS,
            "lastUpdate": NS,
            "taskCounts": {"type": "object", "additionalProperties": INT},
        },
        ["runID", "tag", "state", "startTime", "lastUpdate", "taskCounts"],
    ),
}

RUN = {"runid": {"type": "string", "pattern": "^[0-9]+$"}}
TASK = {**RUN, "name": STR}
STATE = obj({"state": enum(*RUN_STATES)}, ["state"])
TASK_STATE = obj({"state": enum(*TASK_STATES)}, ["state"])
RUN_ID = obj({"runID": INT}, ["runID"])
RUN_LINK = {"runid": "$response.body#/runID"}
SUBMIT = Op(
    "Submit a DAG",
    body=ref("DaggyDag"),
    response=RUN_ID,
    links={
        "GetRun": {"operationId": "get_run", "parameters": RUN_LINK},
        "GetRunState": {"operationId": "run_state", "parameters": RUN_LINK},
        "KillRun": {"operationId": "kill_run", "parameters": RUN_LINK},
        "ResumeRun": {"operationId": "set_run_state", "parameters": RUN_LINK},
    },
)

OPERATIONS = {
    "GET /v1/dagruns": Op(
        "List DAG runs",
        "Runs still queued or running; every run with `all=1`.",
        query={"all": enum("1", "0", "true", "false", "yes", "no", "on", "off")},
        response=arr(ref("DaggyRunSummary")),
    ),
    "POST /v1/dagrun": SUBMIT,
    "POST /v1/dagrun/validate": Op(
        "Validate a DAG without running it",
        '`{"valid": true}`, or 400 with `{"valid": false, "errors": [...]}`.',
        body=ref("DaggyDag"),
        response=obj({"valid": enum(True)}, ["valid"]),
    ),
    "GET /v1/dagrun/{runid}": Op(
        "Get the full state of a DAG run", path=RUN, response=ref("DaggyRun")
    ),
    "DELETE /v1/dagrun/{runid}": Op(
        "Kill a DAG run",
        "Answers once its running tasks are gone, with an empty body (as Daggy).",
        path=RUN,
    ),
    "GET /v1/dagrun/{runid}/state": Op("Get the state of a DAG run", path=RUN, response=STATE),
    "PATCH /v1/dagrun/{runid}/state/{state}": Op(
        "Set the state of a DAG run",
        "QUEUED (or RUNNING) resumes an ERRORED or KILLED run, keeping completed tasks;"
        " anything else is 400.",
        path={**RUN, "state": enum("QUEUED", "RUNNING", "queued", "running")},
        response=RUN_ID,
    ),
    "GET /v1/dagrun/{runid}/task/{name}": Op(
        "Get a task's definition", path=TASK, response=ref("DaggyTaskDetails")
    ),
    "DELETE /v1/dagrun/{runid}/task/{name}": Op(
        "Kill a task (its children then never run)",
        "Answers once its process is gone, with an empty body (as Daggy).",
        path=TASK,
    ),
    "GET /v1/dagrun/{runid}/task/{name}/state": Op(
        "Get a task's state", path=TASK, response=TASK_STATE
    ),
}

# The family's error envelope (``routes.ENVELOPE``).
SCHEMAS["DaggyError"] = obj(
    {"error": STR, "errors": arr(STR)}, ["error"], description="Errors under /v1 and /ready."
)

PART = Part(
    "dagruns",
    "DAG runs (Daggy)",
    "Ad-hoc DAGs with parameter expansion and generators.",
    OPERATIONS,
    SCHEMAS,
)
