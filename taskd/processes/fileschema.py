"""The JSON Schema of a process definition as a YAML (or JSON) file, for ``taskd apply``.

Pure data: the server publishes it (``GET /api/schemas/definition.json``) and docs/ keeps a
copy (a test keeps them equal), so editors can complete and check definition files. The file
form takes the Sundial API's field names, plus short forms where they help.
"""

from __future__ import annotations

from typing import Any

NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"}
ENV = {
    "description": "Environment variables: a mapping, or Sundial's list of"
    " {variable_name, value}.",
    "oneOf": [
        {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
        {"type": "array", "items": {
            "type": "object", "required": ["variable_name"], "additionalProperties": False,
            "properties": {"variable_name": {"type": "string"}, "value": {"type": "string"}}}},
    ],
}  # fmt: skip
CRON_FIELDS = ("seconds", "minutes", "hours", "day_of_month", "month", "day_of_week")
SCHEDULE = {
    "description": "A cron line (5 fields, or 6 with seconds first) read in `timezone`, or"
    " Sundial's union object.",
    "oneOf": [
        {"type": "string", "examples": ["*/5 * * * *", "30 2 * * 1-5"]},
        {"type": "null"},
        {"type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1,
         "properties": {
             "cron_schedule": {
                 "type": "object", "additionalProperties": False,
                 "properties": {**{f: {"type": "string"} for f in CRON_FIELDS},
                                "timezone": {"type": "string"}}},
             "continuous_schedule": {
                 "type": "object", "additionalProperties": False, "required": ["buffer_seconds"],
                 "properties": {"buffer_seconds": {"type": "number", "minimum": 0}}},
         }},
    ],
}  # fmt: skip
IMAGE_FIELDS = {
    "image": {"type": "string", "description": "Image, optionally with :tag."},
    "tag": {"type": "string"},
    "command": {"type": "array", "items": {"type": "string"}},
    "memory": {"type": "integer", "minimum": 4, "description": "MB"},
    "cpu": {"type": "number", "minimum": 0},
    "environment_variables": ENV,
}
EXECUTABLE = {
    "type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
    "properties": {
        "docker_image_command": {"type": "object", "required": ["image"],
                                 "additionalProperties": False, "properties": IMAGE_FIELDS},
        "batch_image_command": {"type": "object", "required": ["image"],
                                "additionalProperties": True, "properties": IMAGE_FIELDS},
        "shell_script_command": {"type": "object", "required": ["script"],
                                 "additionalProperties": False,
                                 "properties": {"script": {"type": "string"},
                                                "environment_variables": ENV}},
    },
}  # fmt: skip
DEPENDENCY = {
    "oneOf": [
        {"type": "string", "description": "A task name (its success is required)."},
        {"type": "object", "additionalProperties": False,
         "properties": {"task_definition_name": {"type": "string"}, "name": {"type": "string"},
                        "success_required": {"type": "boolean"}}},
    ]
}  # fmt: skip
TASK = {
    "type": "object",
    "additionalProperties": False,
    "description": "One task: exactly one of `shell`, `image` or `executable`.",
    "properties": {
        "name": {**NAME, "description": "Short for task_definition_name."},
        "task_definition_name": NAME,
        "shell": {"type": "string", "description": "A script run by sh on the taskd host."},
        "image": IMAGE_FIELDS["image"],
        "command": IMAGE_FIELDS["command"],
        "memory": IMAGE_FIELDS["memory"],
        "cpu": IMAGE_FIELDS["cpu"],
        "env": ENV,
        "executable": EXECUTABLE,
        "depends_on": {"type": "array", "items": DEPENDENCY,
                       "description": "Short for dependencies."},
        "dependencies": {"type": "array", "items": DEPENDENCY},
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": 1000},
        "max_runtime_seconds": {"type": "number", "exclusiveMinimum": 0},
        "backoff_base_seconds": {"type": "number", "minimum": 0},
        "backoff_exponent": {"type": "number", "minimum": 0},
        "require_explicit_success": {"type": "boolean"},
    },
}  # fmt: skip
DEFINITION: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://taskd.invalid/schemas/definition.json",
    "title": "taskd process definition",
    "description": "One definition per YAML document (`taskd apply -f FILE`).",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {**NAME, "description": "Short for process_definition_name."},
        "process_definition_name": NAME,
        "description": {"type": "string", "description": "Short for process_description."},
        "process_description": {"type": "string"},
        "schedule": SCHEDULE,
        "timezone": {"type": "string", "description": "IANA zone of a cron line [UTC]."},
        "paused": {"type": "boolean", "description": "Absent: keep what the server has."},
        "overlap_action": {"enum": ["wait", "terminate", "allow"]},
        "missed_slots": {"enum": ["collapse", "skip", "all"]},
        "notifications": {"type": "array"},
        "tasks": {"type": "array", "minItems": 1, "items": TASK,
                  "description": "Short for task_definitions."},
        "task_definitions": {"type": "array", "minItems": 1, "items": TASK},
    },
    "oneOf": [
        {"required": ["name"]}, {"required": ["process_definition_name"]},
    ],
}  # fmt: skip
