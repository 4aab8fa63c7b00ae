"""Process definitions (Sundial's ``process_definition``): validate, normalise, turn into tasks.

Pure: no I/O. A definition is stored as its normalised document (defaults filled in, so a GET
returns what will run); ``templates()`` turns a stored document into the tasks of a new run.
"""

from __future__ import annotations

import re
from typing import Any

from taskd.dag import find_cycle
from taskd.models import (
    CONTAINER_RUNNERS,
    JobSpec,
    RetryPolicy,
    TaskTemplate,
    default_container_runner,
)
from taskd.notify.rules import parse_alerts, parse_notifications
from taskd.processes import schedule as sched
from taskd.secrets import env_value, parse_env_value
from taskd.validate import Doc, Problems

EXECUTABLES = ("docker_image_command", "batch_image_command", "shell_script_command")
OVERLAP_ACTIONS = ("wait", "terminate", "allow")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_name(name: str, what: str, problems: Problems) -> None:
    if not NAME.fullmatch(name):  # match() would let a trailing newline through ($)
        problems.add(
            f"{what} {name!r} must be 1-128 letters, digits, '_', '.' or '-',"
            " starting with a letter or digit"
        )


def parse_definition(body: Any, path_name: str) -> dict[str, Any]:
    """Validate a PUT body; return the normalised definition document (or raise BadRequest)."""
    problems = Problems()
    doc = Doc(body, "", problems)
    name = doc.str("process_definition_name", required=True)
    if isinstance(name, str) and name != path_name:
        problems.add(
            f"process_definition_name {name!r} does not match the name in the URL {path_name!r}"
        )
    check_name(path_name, "process_definition_name", problems)
    out: dict[str, Any] = {
        "process_definition_name": path_name,
        "process_description": doc.str("process_description", ""),
        "paused": doc.bool("paused", False),  # absent means false, as Sundial: a PUT un-pauses
        "overlap_action": doc.str("overlap_action", "wait"),
        "missed_slots": doc.str("missed_slots", sched.DEFAULT_MISSED_POLICY),
        "notifications": parse_notifications(doc.list("notifications"), problems),
    }
    managed = doc.str("managed_by_file", None)
    if managed is not None:  # set by `taskd apply`: API edits then need the file, or force
        out["managed_by_file"] = managed
    alerts = parse_alerts(doc.value.get("alerts"), problems)
    if alerts:
        out["alerts"] = alerts
    if out["overlap_action"] not in OVERLAP_ACTIONS:
        problems.add(f"overlap_action must be one of {', '.join(OVERLAP_ACTIONS)}")
    if out["missed_slots"] not in sched.MISSED_POLICIES:
        problems.add(f"missed_slots must be one of {', '.join(sched.MISSED_POLICIES)}")
    raw_schedule = doc.value.get("schedule")
    if raw_schedule is not None:
        try:
            out["schedule"] = sched.schedule_doc(sched.parse_schedule(raw_schedule))
        except Exception as exc:  # BadRequest with the field named
            problems.add(getattr(exc, "message", str(exc)))
    tasks = doc.list("task_definitions", required=True)
    if "task_definitions" in doc.value and not tasks:
        problems.add("task_definitions must list at least one task")
    out["task_definitions"] = [
        parse_task(Doc(t, f"task_definitions[{i}]", problems), problems)
        for i, t in enumerate(tasks)
    ]
    check_graph(out["task_definitions"], problems)
    problems.check("invalid process definition")
    return out


def parse_task(doc: Doc, problems: Problems) -> dict[str, Any]:
    name = doc.str("task_definition_name", None, required=True)
    if isinstance(name, str):  # "" too: a task needs a name its dependencies can use
        check_name(name, "task_definition_name", problems)
    name = name or ""
    deps = []
    for i, raw in enumerate(doc.list("dependencies")):
        dep = Doc(raw, f"{doc.where('dependencies')}[{i}]", problems)
        deps.append({
            "task_definition_name": dep.str("task_definition_name", "", required=True,
                                            nonempty=True),
            "success_required": dep.bool("success_required", True),
        })  # fmt: skip
    kind, exe = doc.union("executable", EXECUTABLES, required=True)
    task = {
        "task_definition_name": name,
        "dependencies": deps,
        "executable": {kind: parse_executable(kind, exe)} if exe is not None else {},
        "max_attempts": doc.int("max_attempts", 1, minimum=1, maximum=1000),
        "max_runtime_seconds": doc.num("max_runtime_seconds", None, minimum=0.001),
        "backoff_base_seconds": doc.num("backoff_base_seconds", 0, minimum=0, maximum=86400),
        "backoff_exponent": doc.num("backoff_exponent", 1.0, minimum=0, maximum=100),
        "require_explicit_success": doc.bool("require_explicit_success", False),
    }
    if task["max_runtime_seconds"] is None:
        del task["max_runtime_seconds"]
    return task


def parse_executable(kind: str, exe: Doc) -> dict[str, Any]:
    env = []
    for i, raw in enumerate(exe.list("environment_variables")):
        var = Doc(raw, f"{exe.where('environment_variables')}[{i}]", exe.problems)
        env.append({
            "variable_name": var.str("variable_name", "", required=True, nonempty=True),
            "value": parse_env_value(var.value.get("value", ""), var.where("value"),
                                     exe.problems),
        })  # fmt: skip
    if kind == "shell_script_command":
        return {"script": exe.str("script", "", required=True, nonempty=True),
                "environment_variables": env}  # fmt: skip
    out = {
        "image": exe.str("image", "", required=True, nonempty=True),
        "tag": exe.str("tag", "latest", nonempty=True),
        "command": exe.strings("command"),
        "environment_variables": env,
    }
    runner = exe.str("runner", None, nonempty=True)
    if runner is not None and runner not in CONTAINER_RUNNERS:
        exe.problems.add(f"{exe.where('runner')} must be one of {', '.join(CONTAINER_RUNNERS)}")
    elif runner is not None:
        out["runner"] = runner
    for key in ("constraints", "placement_preferences"):
        if values := exe.strings(key):
            out[key] = values
    memory = exe.int("memory", None, minimum=4, maximum=1 << 22)
    cpu_key = "vCpus" if kind == "batch_image_command" else "cpu"
    cpu = exe.num(cpu_key, None, minimum=0, maximum=1024)
    if memory is not None:
        out["memory"] = memory
    if cpu is not None:
        out[cpu_key] = cpu
    return out


def check_graph(tasks: list[dict[str, Any]], problems: Problems) -> None:
    names = [t["task_definition_name"] for t in tasks]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.add(f"task_definition_name {name!r} is used twice")
        seen.add(name)
    parents: dict[str, list[str]] = {n: [] for n in names}
    for t in tasks:
        for dep in t["dependencies"]:
            other = dep["task_definition_name"]
            if other and other not in seen:
                problems.add(
                    f"task {t['task_definition_name']!r} depends on {other!r},"
                    " which is not a task of this definition"
                )
            elif other:
                parents[t["task_definition_name"]].append(other)
    cycle = find_cycle(parents)
    if cycle:
        problems.add("the dependencies contain a cycle: " + " -> ".join(cycle))


def managed_conflict(name: str, current: dict[str, Any] | None, new_file: str | None) -> str | None:
    """Why an API change of a file-managed definition is refused (None: it is not)."""
    managed = (current or {}).get("managed_by_file")
    if not managed or managed == new_file:
        return None
    return (
        f"process definition {name!r} is managed by the file {managed}: change that file and"
        " run `taskd apply`, or force this change (?force=true, `--force`)"
    )


def job_of(executable: dict[str, Any]) -> JobSpec:
    (kind, exe), = executable.items()  # fmt: skip
    env = tuple((v["variable_name"], env_value(v["value"]))
                for v in exe.get("environment_variables", ()))  # fmt: skip
    if kind == "shell_script_command":
        return JobSpec(runner="local", script=exe["script"], env=env)
    image = exe["image"]
    last = image.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        image = f"{image}:{exe.get('tag') or 'latest'}"
    return JobSpec(
        runner=exe.get("runner") or default_container_runner(),
        constraints=tuple(exe.get("constraints", ())),
        preferences=tuple(exe.get("placement_preferences", ())),
        image=image,
        command=tuple(exe.get("command", ())),
        env=env,
        cpus=float(exe.get("cpu", exe.get("vCpus", 0)) or 0),
        memory_mb=int(exe.get("memory", 0) or 0),
    )


def templates(doc: dict[str, Any], task_filter: str | None = None) -> list[TaskTemplate]:
    """The tasks of a new run of a stored definition (only ``task_filter`` when given)."""
    chosen = [
        t for t in doc["task_definitions"]
        if task_filter is None or t["task_definition_name"] == task_filter
    ]  # fmt: skip
    names = {t["task_definition_name"] for t in chosen}
    return [
        TaskTemplate(
            name=t["task_definition_name"],
            job=job_of(t["executable"]),
            retry=RetryPolicy(t["max_attempts"], t["backoff_base_seconds"], t["backoff_exponent"]),
            max_runtime=t.get("max_runtime_seconds"),
            explicit_success=t["require_explicit_success"],
            # dependencies outside a task filter are ignored, as Sundial does
            parents=[
                (d["task_definition_name"], d["success_required"])
                for d in t["dependencies"]
                if d["task_definition_name"] in names
            ],
        )
        for t in chosen
    ]
