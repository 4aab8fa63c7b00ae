"""Definitions as files: the YAML form <-> the Sundial API's process_definition.

``to_api`` reads one YAML document (keeping ruamel's positions, so every problem names
file:line:column); ``to_file_form`` writes what the server stores in the short, readable
form that ``to_api`` reads back to the same definition (``taskd export`` -> ``apply``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskd.cli.client import CliError
from taskd.cli.files import plain, position

MANAGED = "managed_by_file"
TOP = {
    "name", "process_definition_name", "description", "process_description", "schedule",
    "timezone", "paused", "overlap_action", "missed_slots", "notifications", "tasks",
    "task_definitions",
}  # fmt: skip
TASK_KEYS = {
    "name", "task_definition_name", "shell", "image", "command", "memory", "cpu", "env",
    "executable", "depends_on", "dependencies", "max_attempts", "max_runtime_seconds",
    "backoff_base_seconds", "backoff_exponent", "require_explicit_success",
}  # fmt: skip
TASK_DEFAULTS = {"max_attempts": 1, "backoff_base_seconds": 0, "backoff_exponent": 1.0,
                 "require_explicit_success": False}  # fmt: skip


class FormError(CliError):
    """A problem in a definition file, at a place in it."""


def fail(file: Path, node: Any, key: Any, message: str, value: bool = False) -> FormError:
    """A problem at ``node`` (its ``key``, or with ``value`` that key's value) in ``file``."""
    pos = position(node, key, value) or position(node)
    where = f"{file}:{pos[0]}:{pos[1]}" if pos else str(file)
    return FormError(f"{where}: {message}")


def pick(file: Path, node: Any, short: str, long: str) -> Any:
    if short in node and long in node:
        raise fail(file, node, short, f"give {short!r} or {long!r}, not both")
    return node.get(short, node.get(long))


def to_api(node: Any, file: Path) -> dict[str, Any]:
    """The PUT body for one YAML document; ``FormError`` names the place of any problem."""
    if not isinstance(node, dict):
        raise fail(file, node, None, "a definition is a mapping (name, schedule, tasks, ...)")
    for key in node:
        if key not in TOP:
            raise fail(file, node, key, f"unknown field {key!r}")
    name = pick(file, node, "name", "process_definition_name")
    if not isinstance(name, str) or not name:
        raise fail(file, node, None, "a definition needs a name")
    body: dict[str, Any] = {"process_definition_name": name}
    desc = pick(file, node, "description", "process_description")
    if desc is not None:
        body["process_description"] = str(desc)
    for key in ("paused", "overlap_action", "missed_slots", "notifications"):
        if key in node:
            body[key] = plain(node[key])
    if "schedule" in node:
        body["schedule"] = schedule_of(file, node)
    elif "timezone" in node:
        raise fail(file, node, "timezone", "timezone goes with a cron line in schedule")
    tasks = pick(file, node, "tasks", "task_definitions")
    key = "tasks" if "tasks" in node else "task_definitions"
    if not isinstance(tasks, list) or not tasks:
        raise fail(
            file,
            node,
            key if key in node else None,
            "tasks must list at least one task",
            value=True,
        )
    body["task_definitions"] = [task_of(file, tasks, i) for i in range(len(tasks))]
    return body


def schedule_of(file: Path, node: Any) -> Any:
    raw = node["schedule"]
    tz = node.get("timezone")
    if raw is None:
        return None
    if isinstance(raw, str):
        fields = raw.split()
        if len(fields) == 5:
            fields = ["0", *fields]
        if len(fields) != 6:
            raise fail(
                file,
                node,
                "schedule",
                f"a cron line has 5 fields (or 6, seconds first), got {len(fields)}",
                value=True,
            )
        cron = dict(zip(("seconds", "minutes", "hours", "day_of_month", "month", "day_of_week"),
                        fields, strict=True))  # fmt: skip
        cron["timezone"] = str(tz or "UTC")
        return {"cron_schedule": cron}
    if tz is not None:
        raise fail(file, node, "timezone", "with a schedule object, put timezone inside it")
    return plain(raw)


def env_of(file: Path, node: Any, key: str) -> list[dict[str, str]]:
    raw = node[key]
    if isinstance(raw, dict):
        return [{"variable_name": str(k), "value": "" if v is None else str(plain(v)).lower()
                 if isinstance(v, bool) else str(plain(v))} for k, v in raw.items()]  # fmt: skip
    if isinstance(raw, list):
        return plain(raw)
    raise fail(file, node, key, "env is a mapping of NAME: value")


def task_of(file: Path, tasks: list[Any], i: int) -> dict[str, Any]:
    node = tasks[i]
    if not isinstance(node, dict):
        raise fail(file, tasks, i, "a task is a mapping (name, shell or image, ...)")
    for key in node:
        if key not in TASK_KEYS:
            raise fail(file, node, key, f"unknown task field {key!r}")
    name = pick(file, node, "name", "task_definition_name")
    if not isinstance(name, str) or not name:
        raise fail(file, tasks, i, "a task needs a name")
    out: dict[str, Any] = {"task_definition_name": name}
    kinds = [k for k in ("shell", "image", "executable") if k in node]
    if len(kinds) != 1:
        raise fail(file, tasks, i, f"task {name!r} needs exactly one of shell, image, executable")
    if "executable" in node:
        out["executable"] = plain(node["executable"])
    elif "shell" in node:
        exe: dict[str, Any] = {"script": str(node["shell"])}
        if "env" in node:
            exe["environment_variables"] = env_of(file, node, "env")
        out["executable"] = {"shell_script_command": exe}
    else:
        image = str(node["image"])
        repo, tag = image, "latest"
        last = image.rsplit("/", 1)[-1]
        if ":" in last and "@" not in last:
            repo, tag = image.rsplit(":", 1)
        exe = {"image": repo, "tag": tag, "command": [str(c) for c in node.get("command") or []]}
        if "env" in node:
            exe["environment_variables"] = env_of(file, node, "env")
        for key in ("memory", "cpu"):
            if key in node:
                exe[key] = plain(node[key])
        out["executable"] = {"docker_image_command": exe}
    if "shell" in node or "executable" in node:
        for key in ("command", "memory", "cpu"):
            if key in node:
                raise fail(file, node, key, f"{key} goes with image")
    if "executable" in node and "env" in node:
        raise fail(file, node, "env", "with executable, put environment_variables inside it")
    deps = pick(file, node, "depends_on", "dependencies")
    if deps is not None:
        if not isinstance(deps, list):
            raise fail(
                file,
                node,
                "depends_on" if "depends_on" in node else "dependencies",
                "dependencies are a list of task names",
            )
        out["dependencies"] = [dependency(file, deps, j) for j in range(len(deps))]
    for key in ("max_attempts", "max_runtime_seconds", "backoff_base_seconds",
                "backoff_exponent", "require_explicit_success"):  # fmt: skip
        if key in node:
            out[key] = plain(node[key])
    return out


def dependency(file: Path, deps: list[Any], j: int) -> dict[str, Any]:
    raw = deps[j]
    if isinstance(raw, str):
        return {"task_definition_name": raw, "success_required": True}
    if isinstance(raw, dict):
        name = raw.get("name", raw.get("task_definition_name"))
        return {"task_definition_name": name,
                "success_required": bool(raw.get("success_required", True))}  # fmt: skip
    raise fail(file, deps, j, "a dependency is a task name or {name, success_required}")


# -- from the server --------------------------------------------------------------------------


def to_file_form(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored definition in the short file form (runtime fields left out).

    ``paused`` is left out: it is the server's runtime state, and ``apply`` keeps it when a
    file does not say.
    """
    out: dict[str, Any] = {"name": doc["process_definition_name"]}
    if doc.get("process_description"):
        out["description"] = doc["process_description"]
    schedule = doc.get("schedule")
    if schedule and "cron_schedule" in schedule:
        cron = schedule["cron_schedule"]
        fields = [
            cron.get(f, "*")
            for f in ("seconds", "minutes", "hours", "day_of_month", "month", "day_of_week")
        ]
        if fields[0] == "0":
            fields = fields[1:]
        out["schedule"] = " ".join(fields)
        if cron.get("timezone", "UTC") != "UTC":
            out["timezone"] = cron["timezone"]
    elif schedule:
        out["schedule"] = schedule
    if doc.get("overlap_action", "wait") != "wait":
        out["overlap_action"] = doc["overlap_action"]
    if doc.get("missed_slots", "collapse") != "collapse":
        out["missed_slots"] = doc["missed_slots"]
    if doc.get("notifications"):
        out["notifications"] = doc["notifications"]
    out["tasks"] = [task_form(t) for t in doc["task_definitions"]]
    return out


def env_form(variables: list[dict[str, Any]]) -> Any:
    names = [v["variable_name"] for v in variables]
    if len(set(names)) != len(names):
        return variables  # a mapping cannot say the same name twice
    return {v["variable_name"]: v.get("value") or "" for v in variables}


def task_form(t: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": t["task_definition_name"]}
    (kind, exe), = t["executable"].items()  # fmt: skip
    if kind == "shell_script_command":
        out["shell"] = exe["script"]
        if exe.get("environment_variables"):
            out["env"] = env_form(exe["environment_variables"])
    elif kind == "docker_image_command" and set(exe) <= {
        "image", "tag", "command", "environment_variables", "memory", "cpu"
    }:  # fmt: skip
        tag = exe.get("tag") or "latest"
        last = exe["image"].rsplit("/", 1)[-1]
        image = exe["image"] if tag == "latest" or ":" in last else f"{exe['image']}:{tag}"
        if tag != "latest" and ":" in last:  # cannot be said in one string
            out["executable"] = {kind: exe}
        else:
            out["image"] = image
            if exe.get("command"):
                out["command"] = list(exe["command"])
            if exe.get("environment_variables"):
                out["env"] = env_form(exe["environment_variables"])
            for key in ("memory", "cpu"):
                if exe.get(key) is not None:
                    out[key] = exe[key]
    else:
        out["executable"] = {kind: exe}
    deps = t.get("dependencies") or []
    if deps:
        if all(d.get("success_required", True) for d in deps):
            out["depends_on"] = [d["task_definition_name"] for d in deps]
        else:
            out["depends_on"] = [{"name": d["task_definition_name"],
                                  "success_required": d.get("success_required", True)}
                                 for d in deps]  # fmt: skip
    for key, default in TASK_DEFAULTS.items():
        if key in t and t[key] != default:
            out[key] = t[key]
    if t.get("max_runtime_seconds") is not None:
        out["max_runtime_seconds"] = t["max_runtime_seconds"]
    return out


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """What ``apply`` compares: the file form of a full (server) or fresh (file) definition."""
    full = {"overlap_action": "wait", "missed_slots": "collapse", **doc}
    tasks = []
    for t in full["task_definitions"]:
        t = {**TASK_DEFAULTS, "dependencies": [], **t}
        (kind, exe), = t["executable"].items()  # fmt: skip
        exe = dict(exe)
        if kind == "docker_image_command":
            exe.setdefault("tag", "latest")
            exe.setdefault("command", [])
        exe.setdefault("environment_variables", [])
        t["executable"] = {kind: exe}
        tasks.append(t)
    full["task_definitions"] = tasks
    schedule = full.get("schedule")
    if schedule and "cron_schedule" in schedule:
        cron = {"seconds": "0", "timezone": "UTC", **schedule["cron_schedule"]}
        full["schedule"] = {"cron_schedule": {k: str(v).strip() for k, v in cron.items()}}
    form = to_file_form(full)
    if "paused" in doc:
        form["paused"] = bool(doc["paused"])
    return plain(form)
