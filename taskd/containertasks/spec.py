"""Container tasks (Drove), pure part: parsing a CREATE, durations, states, TaskInfo.

A Drove task is a run of kind ``task`` with one task on the docker runner, never retried.
The handlers are in ``taskd.containertasks.routes``; nothing here does I/O.
"""

from __future__ import annotations

import os
import re
import uuid as uuidlib
from typing import Any

import orjson

from taskd.containertasks import store as cq
from taskd.models import (
    RUN_ACTIVE,
    JobSpec,
    RetryPolicy,
    RunKind,
    TaskTemplate,
    Trigger,
    Volume,
    default_container_runner,
)
from taskd.secrets import env_value, parse_env_value
from taskd.store.runs import RunPlan
from taskd.timefmt import epoch_ms
from taskd.validate import Doc, Problems, type_name

ID = re.compile(r"[a-zA-Z0-9_-]+")
INVALID = "Command validation failure"
STATES = ("PENDING", "PROVISIONING", "STARTING", "RUNNING", "RUN_COMPLETED", "DEPROVISIONING",
          "STOPPED", "PROVISIONING_FAILED", "RUN_FAILED", "LOST")  # fmt: skip
MAX_ARGS = 2048
MIN_MEMORY_MB = 6  # the smallest memory limit the Docker engine accepts
DEFAULT_PULL_TIMEOUT = "15 minutes"
LOG_FILES = {"output.log": "stdout", "stderr.log": "stderr", "executor.log": "executor"}
MAX_READ = 1 << 20


# -- durations as Drove writes them ("5m", "100 seconds", "15 minutes") ---------------------

DURATION = re.compile(r"(\d+)\s*(\S+)", re.ASCII)
UNITS: dict[str, tuple[str, float]] = {}
for _names, _unit, _seconds in (
    (("ns", "nanosecond", "nanoseconds"), "nanoseconds", 1e-9),
    (("us", "microsecond", "microseconds"), "microseconds", 1e-6),
    (("ms", "millisecond", "milliseconds"), "milliseconds", 1e-3),
    (("s", "second", "seconds"), "seconds", 1.0),
    (("m", "min", "mins", "minute", "minutes"), "minutes", 60.0),
    (("h", "hour", "hours"), "hours", 3600.0),
    (("d", "day", "days"), "days", 86400.0),
):
    UNITS.update(dict.fromkeys(_names, (_unit, _seconds)))
MAX_DURATION = 365 * 86400.0


def parse_duration(text: str) -> tuple[float, str]:
    """Seconds and the canonical spelling ("100 seconds") of a Drove duration.

    Strict, as Drove reads them: digits, optional blanks, one known unit (case matters); no
    fractions, signs or compound values. Raises ValueError with the reason.
    """
    match = DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like '100 seconds' or '5m'")
    unit = UNITS.get(match[2])
    if unit is None:
        raise ValueError(f"{text!r} has an unknown time unit {match[2]!r}")
    count = int(match[1])
    seconds = count * unit[1]
    if seconds > MAX_DURATION:
        raise ValueError(f"{text!r} is longer than 365 days")
    name = unit[0][:-1] if count == 1 else unit[0]
    return seconds, f"{count} {name}"


def duration(doc: Doc, key: str, default: str | None = None) -> tuple[float, str] | None:
    """A duration field as (seconds, canonical text); a problem and None when bad."""
    raw = doc.str(key, default, required=default is None)
    if raw is None:
        return None
    try:
        seconds, text = parse_duration(raw)
    except ValueError as exc:
        doc.problems.add(f"{doc.where(key)}: {exc}")
        return None
    if seconds <= 0:
        doc.problems.add(f"{doc.where(key)} must be longer than zero")
        return None
    return seconds, text


# -- reading operations ---------------------------------------------------------------------


def ident(doc: Doc, key: str) -> str:
    """A required app or task id: non-empty, letters, digits, '-' and '_' only."""
    value = doc.str(key, "", required=True, nonempty=True)
    if value and not ID.fullmatch(value):
        doc.problems.add(f"{doc.where(key)} must match [a-zA-Z\\d\\-_]+, got {value!r}")
    return value


def string_map(doc: Doc, key: str) -> dict[str, str]:
    """An optional object of string values (env, tags)."""
    value = doc.value.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        doc.problems.add(f"{doc.where(key)} must be an object of strings")
        return {}
    return value


def env_map(doc: Doc) -> dict[str, Any]:
    """``env``: strings, or ``{"secret": NAME}`` for a value taken from a named secret."""
    value = doc.value.get("env")
    if value is None:
        return {}
    if not isinstance(value, dict):
        doc.problems.add(f"{doc.where('env')} must be an object of strings")
        return {}
    return {k: parse_env_value(v, f"{doc.where('env')}.{k}", doc.problems)
            for k, v in value.items()}  # fmt: skip


def op_spec(doc: Doc) -> float | None:
    """``opSpec``: the timeout in seconds; parallelism and failureStrategy do not matter here."""
    op = doc.obj("opSpec", required=True)
    if op is None:
        return None
    op.int("parallelism", minimum=1, maximum=512)
    strategy = op.str("failureStrategy")
    if strategy not in (None, "STOP", "ROLLBACK"):
        op.problems.add(f"{op.where('failureStrategy')} must be STOP or ROLLBACK")
    op.unknown({"timeout", "parallelism", "failureStrategy"})
    found = duration(op, "timeout")
    return found[0] if found else None


def resources(spec: Doc) -> tuple[int, int]:
    """(CPU count, memory MB) from ``resources``: exactly one CPU and one MEMORY entry."""
    cpus = memory = 0
    seen: set[str] = set()
    items = spec.list("resources", required=True)
    if "resources" in spec.value and not items:
        spec.problems.add("spec.resources must not be empty")
    for i, raw in enumerate(items):
        item = Doc(raw, f"spec.resources[{i}]", spec.problems)
        kind = item.value.get("type")
        if kind in ("CPU", "MEMORY") and kind in seen:
            spec.problems.add(f"spec.resources has more than one {kind} entry")
        elif kind == "CPU":
            cpus = item.int("count", 0, required=True, minimum=1)
            item.unknown({"type", "count"})
        elif kind == "MEMORY":
            memory = item.int("sizeInMB", 0, required=True, minimum=MIN_MEMORY_MB)
            item.unknown({"type", "sizeInMB"})
        else:
            spec.problems.add(f"spec.resources[{i}].type must be CPU or MEMORY, got {kind!r}")
        seen.add(str(kind))
    if items and "CPU" not in seen:
        spec.problems.add("spec.resources needs a CPU entry with count >= 1")
    if items and "MEMORY" not in seen:
        spec.problems.add(f"spec.resources needs a MEMORY entry with sizeInMB >= {MIN_MEMORY_MB}")
    return cpus, memory


def inside(path: str, roots: tuple[str, ...]) -> bool:
    """Whether ``path`` (symlinks resolved) is one of ``roots`` or below one."""
    real = os.path.realpath(path)
    for root in roots:
        base = os.path.realpath(root)
        if real == base or real.startswith(base.rstrip("/") + "/"):
            return True
    return False


def volumes(spec: Doc, allowed: tuple[str, ...]) -> tuple[list[dict], list[Volume]]:
    """Volumes as shown in TaskInfo and as mounted; host paths only from ``allowed``."""
    shown, mounts = [], []
    for i, raw in enumerate(spec.list("volumes")):
        v = Doc(raw, f"spec.volumes[{i}]", spec.problems)
        inner = v.str("pathInContainer", "", required=True)
        host = v.str("pathOnHost", "", required=True)
        mode = v.str("mode", "", required=True)
        v.unknown({"pathInContainer", "pathOnHost", "mode"})
        for key, path in (("pathInContainer", inner), ("pathOnHost", host)):
            if path and (not path.startswith("/") or any(c in path for c in ":,\n\0")):
                v.problems.add(
                    f"{v.where(key)} must be an absolute path without ':', ',', newlines or NUL"
                )
        if mode and mode not in ("READ_WRITE", "READ_ONLY"):
            v.problems.add(f"{v.where('mode')} must be READ_WRITE or READ_ONLY, got {mode!r}")
        # A NUL byte cannot be in a path (the OS refuses it); it is a problem reported above.
        resolvable = host.startswith("/") and "\0" not in host
        if resolvable and not inside(host, allowed):
            v.problems.add(f"{v.where('pathOnHost')}: volume {host} is not in the allowed list")
        shown.append({"pathInContainer": inner, "pathOnHost": host, "mode": mode})
        # Mount the resolved path: a symlink swapped in later cannot widen what was checked.
        real = os.path.realpath(host) if resolvable else host
        mounts.append(Volume(real, inner, mode == "READ_ONLY"))
    return shown, mounts


SPEC_FIELDS = frozenset({"sourceAppName", "taskId", "executable", "resources", "volumes", "env",
                         "args", "tags", "logging", "placementPolicy", "configs", "devices",
                         "userSpec"})  # fmt: skip


def parse_create(body: Doc, svc: Any) -> tuple[RunPlan, str, str]:
    """The run a CREATE asks for; every problem is raised at once as validation errors."""
    op_spec(body)
    body.unknown({"type", "spec", "opSpec"})
    spec = body.obj("spec", required=True) or Doc({}, "spec", Problems())
    return parse_spec(spec, svc, body.problems)


def parse_spec(spec: Doc, svc: Any, problems: Problems | None = None) -> tuple[RunPlan, str, str]:
    """The run a TaskSpec asks for (as CREATE and ``validate/spec`` read it).

    Every problem found in ``problems`` (the spec's own by default) is raised at once as
    validation errors.
    """
    problems = problems if problems is not None else spec.problems
    app, task_id = ident(spec, "sourceAppName"), ident(spec, "taskId")
    exe = spec.obj("executable", required=True) or Doc({}, "", Problems())
    if exe.str("type", "DOCKER") != "DOCKER":
        problems.add("spec.executable.type must be DOCKER")
    url = exe.str("url", "", required=True, nonempty=True)
    if url and any(c.isspace() for c in url):
        problems.add("spec.executable.url must not contain blanks")
    pull = duration(exe, "dockerPullTimeout", DEFAULT_PULL_TIMEOUT)
    exe.unknown({"type", "url", "dockerPullTimeout"})
    cpus, memory = resources(spec)
    env, tags = env_map(spec), string_map(spec, "tags")
    for name in env:
        if not name or "=" in name:
            problems.add(f"spec.env: {name!r} is not a valid variable name")
    args = spec.strings("args")
    if len(args) > MAX_ARGS:
        problems.add(f"spec.args has {len(args)} entries; at most {MAX_ARGS} are allowed")
    shown, mounts = volumes(spec, svc.settings.allowed_volumes)
    placement = spec.obj("placementPolicy")
    if placement is not None and placement.value.get("type") == "LOCAL":
        problems.add("Local service placement is not allowed for tasks")
    for key, why in (("configs", "config files are not supported"),
                     ("devices", "devices are not allowed"),
                     ("userSpec", "userSpec is not supported")):  # fmt: skip
        if spec.value.get(key):
            problems.add(f"spec.{key}: {why}")
    logging = spec.value.get("logging")
    if logging is not None and not isinstance(logging, dict):
        problems.add(f"spec.logging must be an object, got {type_name(logging)}")
    spec.unknown(SPEC_FIELDS)

    run_uuid = str(uuidlib.uuid4())
    instance_id = f"TI-{run_uuid}"
    # What Drove gives a task container. DROVE_CONTAINER_ID is the image, as Drove's
    # executor sets it (the container's own id does not exist before it is created).
    injected = {
        "DROVE_CONTAINER_ID": url,
        "DROVE_TASK_ID": task_id,
        "DROVE_SOURCE_APP_NAME": app,
        "DROVE_INSTANCE_ID": instance_id,
        "DROVE_EXECUTOR_HOST": svc.settings.hostname,
    }
    # HOST comes first so the task's own env can override it, as in Drove.
    job = JobSpec(runner=default_container_runner(), image=url, command=tuple(args),
                  env=tuple({"HOST": svc.settings.hostname,
                             **{k: env_value(v) for k, v in env.items()},
                             **injected}.items()),
                  cpus=float(cpus), memory_mb=memory,
                  pin_cores=True, volumes=tuple(mounts),
                  pull_timeout=pull[0] if pull else 0.0)  # fmt: skip
    template = TaskTemplate(name=task_id or "task", job=job, retry=RetryPolicy(1))
    if cpus and memory:
        for why in svc.engine.refusal([template]):
            problems.add(f"not enough resources on this host: {why}")
    problems.check(INVALID)
    executable = {"type": "DOCKER", "url": url, "dockerPullTimeout": pull[1] if pull else ""}
    shown_spec = {
        "executable": executable,
        "cpus": cpus,
        "memoryInMB": memory,
        "volumes": shown,
        "env": env,
        "args": args,
        "tags": tags,
        "logging": logging,
    }
    extra = {"sourceAppName": app, "taskId": task_id, "instanceId": instance_id,
             "executorId": svc.instance, "spec": shown_spec}  # fmt: skip
    plan = RunPlan(kind=RunKind.TASK, name=cq.run_name(app, task_id), trigger=Trigger.API,
                   uuid=run_uuid, tasks=[template], extra=extra)  # fmt: skip
    return plan, app, task_id


# -- TaskInfo -------------------------------------------------------------------------------


def failed(status: str, message: str) -> tuple[dict[str, Any], str]:
    """A taskResult without an exit code of the container, and the error message."""
    return {"status": status, "exitCode": -1}, message


def drove_state(row: Any) -> tuple[str, dict[str, Any] | None, str]:
    """(state, taskResult, errorMessage) of a task from its run and latest attempt."""
    attempt, reason = row["attempt_state"], row["reason"] or ""
    if attempt is None:
        if row["run_state"] in RUN_ACTIVE:
            return "PENDING", None, ""
        # Killed (or otherwise ended) before it was ever started.
        return "STOPPED", *failed("CANCELLED", "the task was killed before it started")
    if attempt == "starting":
        return "PROVISIONING", None, ""  # pulling, creating and starting look alike here
    if attempt == "running":
        return "RUNNING", None, ""
    if attempt == "exited":
        status = "SUCCESSFUL" if row["succeeded"] else "FAILED"
        if reason == f"exited with status {row['exit_code']}":
            reason = f"Task instance exited with status: {row['exit_code']}"  # Drove's words
        return "STOPPED", {"status": status, "exitCode": row["exit_code"]}, reason
    if attempt == "killed":
        return "STOPPED", *failed("CANCELLED", reason)
    if attempt == "timed_out":
        return "STOPPED", *failed("TIMED_OUT", reason)
    if attempt == "lost" and row["run_state"] in RUN_ACTIVE:
        # Lost through no fault of its own (engine outage, taskd crash): it starts again.
        return "PENDING", None, reason
    if attempt == "lost":
        return "LOST", *failed("LOST", reason or "Instance lost")
    # A task that could not be provisioned or started ends STOPPED with a FAILED result,
    # as Drove's state machine takes PROVISIONING_FAILED and RUN_FAILED through
    # DEPROVISIONING to STOPPED; the reason stays in errorMessage.
    return "STOPPED", *failed("FAILED", reason)


def task_info(row: Any, hostname: str) -> dict[str, Any]:
    """A task as Drove's TaskInfo: allocations (pinned cores), not requirements."""
    extra = orjson.loads(row["extra"])
    spec = extra["spec"]
    state, result, error = drove_state(row)
    cores = [int(c) for c in row["cpuset"].split(",")] if row["cpuset"] else []
    info: dict[str, Any] = {
        "sourceAppName": extra["sourceAppName"],
        "taskId": extra["taskId"],
        "instanceId": extra["instanceId"],
        "executorId": extra["executorId"],
        "hostname": row["host"] or hostname,
        "executable": spec["executable"],
        "resources": [
            {"type": "CPU", "cores": {"0": cores}},
            {"type": "MEMORY", "memoryInMB": {"0": spec["memoryInMB"]}},
        ],
        "volumes": spec["volumes"],
        "env": spec["env"],
        "state": state,
        "metadata": {},
    }
    if spec.get("logging"):
        info["loggingSpec"] = spec["logging"]
    if result is not None:
        info["taskResult"] = result
    times = (row["updated_at"], row["attempt_created"], row["attempt_started"],
             row["attempt_ended"])  # fmt: skip
    info["errorMessage"] = error
    info["created"] = epoch_ms(row["created_at"])
    info["updated"] = epoch_ms(max(t for t in times if t is not None))
    return info
