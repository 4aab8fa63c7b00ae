"""OpenAPI declarations of the Processes family (Sundial), next to ``taskd.processes.routes``."""

from __future__ import annotations

from taskd.http.openapi import Part
from taskd.http.openapi.schema import (
    ANY,
    BOOL,
    INT,
    STR,
    UUID,
    Op,
    arr,
    count,
    described,
    enum,
    nullable,
    obj,
    ref,
)
from taskd.models import AttemptState, Trigger
from taskd.processes import definitions as defs
from taskd.processes.routes import PROCESS_STATUSES, TASK_STATUSES
from taskd.processes.schedule import MAX_BUFFER, MISSED_POLICIES

NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"}
TEXT = {"type": "string", "pattern": r"\S"}  # not empty, not only blanks
TIME = {"type": "string", "format": "date-time"}
CRON_FIELD = {"type": "string", "minLength": 1, "maxLength": 100}

ENV_VARS = arr(obj({"variable_name": TEXT, "value": nullable(STR)}, ["variable_name"]))
IMAGE = {
    "image": TEXT,
    "tag": nullable(TEXT),
    "command": nullable(arr(STR)),
    "environment_variables": nullable(ENV_VARS),
    "memory": nullable({"type": "integer", "minimum": 4, "maximum": 1 << 22}),
    # Extensions: where the container runs (docs/scale-out.md).
    "runner": nullable({"enum": ["docker", "swarm"]}),
    "constraints": nullable(arr(STR)),
    "placement_preferences": nullable(arr(STR)),
}
CPU = nullable({"type": "number", "minimum": 0, "maximum": 1024})

SCHEMAS = {
    "CronSchedule": obj(
        {
            "seconds": CRON_FIELD,
            "minutes": CRON_FIELD,
            "hours": CRON_FIELD,
            "day_of_month": CRON_FIELD,
            "month": CRON_FIELD,
            "day_of_week": CRON_FIELD,
            "timezone": described(STR, "IANA time zone name (extension); default UTC"),
        },
        ["minutes", "hours", "day_of_month", "month", "day_of_week"],
        closed=True,
        description="Quartz-style fields; `?` is accepted as `*`; `seconds` is an extension.",
    ),
    "Schedule": {
        "oneOf": [
            obj({"cron_schedule": ref("CronSchedule")}, ["cron_schedule"], closed=True),
            obj(
                {
                    "continuous_schedule": obj(
                        {"buffer_seconds": {"type": "number", "minimum": 0, "maximum": MAX_BUFFER}},
                        closed=True,
                    )
                },
                ["continuous_schedule"],
                closed=True,
            ),
        ]
    },
    "Executable": {
        "description": "A union keyed by its type.",
        "oneOf": [
            obj(
                {"docker_image_command": obj({**IMAGE, "cpu": CPU}, ["image"])},
                ["docker_image_command"],
                closed=True,
            ),
            obj(
                {"batch_image_command": obj({**IMAGE, "vCpus": CPU}, ["image"])},
                ["batch_image_command"],
                closed=True,
            ),
            obj(
                {
                    "shell_script_command": obj(
                        {"script": TEXT, "environment_variables": nullable(ENV_VARS)}, ["script"]
                    )
                },
                ["shell_script_command"],
                closed=True,
            ),
        ],
    },
    "TaskDefinition": obj(
        {
            "task_definition_name": NAME,
            "dependencies": nullable(
                arr(
                    obj(
                        {"task_definition_name": STR, "success_required": nullable(BOOL)},
                        ["task_definition_name"],
                    )
                )
            ),
            "executable": ref("Executable"),
            "max_attempts": nullable({"type": "integer", "minimum": 1, "maximum": 1000}),
            "max_runtime_seconds": nullable({"type": "number", "minimum": 0.001}),
            "backoff_base_seconds": nullable({"type": "number", "minimum": 0, "maximum": 86400}),
            "backoff_exponent": nullable({"type": "number", "minimum": 0, "maximum": 100}),
            "require_explicit_success": nullable(BOOL),
        },
        ["task_definition_name", "executable"],
    ),
    "ProcessDefinitionInput": obj(
        {
            "process_definition_name": described(NAME, "must equal the name in the path"),
            "process_description": nullable(STR),
            "paused": nullable(BOOL),
            "overlap_action": nullable(enum(*defs.OVERLAP_ACTIONS)),
            "missed_slots": nullable(enum(*MISSED_POLICIES)),
            "notifications": nullable(arr(ANY)),
            "schedule": nullable(ref("Schedule")),
            "task_definitions": arr(ref("TaskDefinition"), minItems=1),
        },
        ["process_definition_name", "task_definitions"],
        description="Task names are unique; dependencies name tasks of the definition, no cycle.",
    ),
    "ProcessDefinition": obj(
        {
            "process_definition_name": STR,
            "process_description": STR,
            "paused": BOOL,
            "overlap_action": enum(*defs.OVERLAP_ACTIONS),
            "missed_slots": enum(*MISSED_POLICIES),
            "notifications": arr(ANY),
            "schedule": ref("Schedule"),
            "task_definitions": arr(ref("TaskDefinition")),
            "version": INT,
            "created_at": TIME,
            "updated_at": TIME,
        },
        ["process_definition_name", "paused", "task_definitions", "version"],
    ),
    "LogEntry": obj(
        {"log_entry_id": UUID, "when": TIME, "source": STR, "message": STR},
        ["log_entry_id", "when", "source", "message"],
    ),
    "MetadataEntry": obj(
        {"metadata_entry_id": UUID, "when": TIME, "key": STR, "value": STR},
        ["metadata_entry_id", "when", "key", "value"],
    ),
    "LogEntryInput": obj(
        {"log_entry_id": UUID, "when": TIME, "source": STR, "message": STR},
        ["log_entry_id", "when", "source", "message"],
    ),
    "MetadataEntryInput": obj(
        {"metadata_entry_id": UUID, "when": TIME, "key": STR, "value": STR},
        ["metadata_entry_id", "when", "key", "value"],
    ),
    "Task": obj(
        {
            "task_id": UUID,
            "process_id": UUID,
            "process_definition_name": STR,
            "task_definition_name": STR,
            "start_time": TIME,
            "end_time": nullable(TIME),
            "previous_attempt_count": {"type": "integer", "minimum": 0},
            "log_entries": arr(ref("LogEntry")),
            "metadata_entries": arr(ref("MetadataEntry")),
            "exit_code": nullable(INT),
            "status": enum("running", "succeeded", "failed"),
            "attempt_state": enum(*AttemptState),
            "reason": nullable(STR),
        },
        ["task_id", "process_id", "task_definition_name", "start_time", "status"],
        description="One attempt of a task.",
    ),
    "Process": obj(
        {
            "process_id": UUID,
            "process_definition_name": STR,
            "start_time": TIME,
            "end_time": nullable(TIME),
            "status": enum(*PROCESS_STATUSES),
            "task": arr(ref("Task")),
            "trigger": enum(*Trigger),
            "definition_version": nullable(INT),
            "killed": BOOL,
        },
        ["process_id", "process_definition_name", "start_time", "status", "task"],
    ),
}

NAME_PATH = {"name": STR}
NAME_LINK = {"name": "$request.path.name"}
DEFINITION_LINKS = {
    "GetDefinition": {"operationId": "get_definition", "parameters": NAME_LINK},
    "TriggerDefinition": {"operationId": "trigger", "parameters": NAME_LINK},
    "PauseDefinition": {"operationId": "pause", "parameters": NAME_LINK},
    "ResumeDefinition": {"operationId": "resume", "parameters": NAME_LINK},
    "DeleteDefinition": {"operationId": "delete_definition", "parameters": NAME_LINK},
}
PROCESS_LINK = {"process_id": "$response.body#/0/process_id"}
STATUSES = {"type": "array", "items": enum(*PROCESS_STATUSES)}
TASK_FILTER = {"type": "array", "items": enum(*TASK_STATUSES)}
TASK_ID = {"task_id": UUID}
ENTRIES = "One entry or an array of them; an id already stored is accepted once."

OPERATIONS = {
    "GET /api/process_definitions": Op(
        "List process definitions", response=arr(ref("ProcessDefinition"))
    ),
    "GET /api/process_definitions/{name}": Op(
        "Get a process definition", path=NAME_PATH, response=ref("ProcessDefinition")
    ),
    "PUT /api/process_definitions/{name}": Op(
        "Create or replace a process definition",
        "Every change bumps the version; runs in flight keep the version they started with.",
        path={"name": NAME},
        body=ref("ProcessDefinitionInput"),
        response=ref("ProcessDefinition"),
        links=DEFINITION_LINKS,
    ),
    "DELETE /api/process_definitions/{name}": Op(
        "Delete a process definition",
        "Its processes stay as history.",
        path=NAME_PATH,
        status=204,
    ),
    "POST /api/process_definitions/{name}/trigger": Op(
        "Start a process of the definition now",
        "With `overlap_action` wait and a process still running, the trigger waits for it.",
        path=NAME_PATH,
        query={"task_definition_name": STR},
        status=204,
    ),
    "POST /api/process_definitions/{name}/pause": Op(
        "Pause the schedule", path=NAME_PATH, status=204
    ),
    "POST /api/process_definitions/{name}/resume": Op(
        "Resume the schedule", path=NAME_PATH, status=204
    ),
    "GET /api/processes": Op(
        "Search processes (runs of definitions), newest first",
        "`allowed_statuses` may be repeated or comma-separated.",
        query={
            "process_definition_name": STR,
            "start_time": TIME,
            "end_time": TIME,
            "max_records": count(),
            "allowed_statuses": STATUSES,
        },
        response=arr(ref("Process")),
        links={
            "GetProcess": {"operationId": "get_process", "parameters": PROCESS_LINK},
            "RetryProcess": {"operationId": "retry", "parameters": PROCESS_LINK},
            "KillProcess": {"operationId": "kill", "parameters": PROCESS_LINK},
        },
    ),
    "GET /api/processes/{process_id}": Op(
        "Get a process with every attempt of every task",
        path={"process_id": UUID},
        response=ref("Process"),
    ),
    "POST /api/processes/{process_id}/retry": Op(
        "Retry a process",
        "Each failed task gets one more attempt; succeeded tasks are kept.",
        path={"process_id": UUID},
        status=204,
    ),
    "POST /api/processes/{process_id}/kill": Op(
        "Kill a process", path={"process_id": UUID}, status=204
    ),
    "GET /api/tasks": Op(
        "Search tasks (attempts of process tasks), most recent first",
        query={
            "process_definition_name": STR,
            "task_definition_name": STR,
            "allowed_statuses": TASK_FILTER,
            "start_time": TIME,
            "end_time": TIME,
            "limit": count(),
        },
        response=arr(ref("Task")),
    ),
    "POST /api/tasks/{task_id}/log_entries": Op(
        "Append log entries to a task (from inside it, with its task token)",
        ENTRIES,
        path=TASK_ID,
        body={"anyOf": [ref("LogEntryInput"), arr(ref("LogEntryInput"))]},
        status=204,
    ),
    "POST /api/tasks/{task_id}/metadata": Op(
        "Append metadata entries to a task (from inside it, with its task token)",
        ENTRIES,
        path=TASK_ID,
        body={"anyOf": [ref("MetadataEntryInput"), arr(ref("MetadataEntryInput"))]},
        status=204,
    ),
    "POST /api/tasks/{task_id}/succeed": Op(
        "Report that the task succeeded", "The first report wins.", path=TASK_ID, status=204
    ),
    "POST /api/tasks/{task_id}/fail": Op(
        "Report that the task failed", "The first report wins.", path=TASK_ID, status=204
    ),
    "GET /api/tasks/{task_id}/logs": Op(
        "What the task printed",
        "`follow` keeps the response open until the attempt ends.",
        path=TASK_ID,
        query={"stream": enum("stdout", "stderr", "executor", "all"), "follow": BOOL},
        response=STR,
        response_type="text/plain",
        extension=True,
    ),
    "GET /_internal_/metrics": Op("Prometheus metrics", response=STR, response_type="text/plain"),
}

PART = Part(
    "processes",
    "Processes (Sundial)",
    "Process definitions, processes, task callbacks.",
    OPERATIONS,
    SCHEMAS,
)
