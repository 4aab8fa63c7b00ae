"""Daggy DAG specs: validate (every error at once); expansion is in ``taskd.dagruns.expand``.

Pure: no I/O. A spec is ``{"tag", "parameters", "tasks": {name: task}}``; a task is
``{"job", "maxRetries", "retryIntervalSeconds", "parents", "children", "isGenerator"}``. A task
whose ``job.command`` or ``job.environment`` mentions ``{{NAME}}`` placeholders becomes one task
per combination of those parameters' values (cartesian product, in the order the parameters are
declared, the last varying fastest), named ``<task>_<i>``; a task that mentions none keeps its
name. An edge to a task name connects to every one of its expansions.

Each template keeps Daggy's echo of its definition in ``extra`` (expanded ``job``, ``maxRetries``,
``retryIntervalSeconds``, ``isGenerator``); parents and children are read from the edges.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import orjson

from taskd.dagruns.expand import TaskDef, expand
from taskd.errors import BadRequest
from taskd.models import CONTAINER_RUNNERS, TaskTemplate
from taskd.secrets import MARK as SECRET_MARK
from taskd.secrets import NAME as SECRET_NAME
from taskd.validate import type_name

TASK_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,200}")
NAMES = re.compile(r"[A-Za-z0-9_.\-]{1,200}(?:\n[A-Za-z0-9_.\-]{1,200})*")
MAX_RETRIES = 1000

SPEC_KEYS = frozenset({"tag", "parameters", "tasks"})
TASK_KEYS = frozenset(
    {"job", "maxRetries", "retryIntervalSeconds", "parents", "children", "isGenerator"}
)
JOB_KEYS = frozenset({"command", "environment", "cores", "memoryMB", "timeoutSeconds", "image",
                      "runner", "constraints"})  # fmt: skip


@dataclass(slots=True)
class DagSpec:
    """A validated, expanded DAG ready to become a run."""

    tag: str
    parameters: dict[str, list[str]]
    tasks: list[TaskTemplate]


def parse_spec(body: Any) -> DagSpec:
    """Validate a submitted DAG and expand it; raise BadRequest listing every problem."""
    errors: list[str] = []
    if not isinstance(body, dict):
        raise BadRequest(
            "invalid DAG", details=[f"the DAG must be a JSON object, got {type_name(body)}"]
        )
    for key in body:
        if key not in SPEC_KEYS:
            errors.append(f"{key} is not a known field of a DAG")
    tag = body.get("tag", "")
    if tag is None:
        tag = ""
    elif not isinstance(tag, str):
        errors.append(f"tag must be a string, got {type_name(tag)}")
        tag = ""
    params = parse_parameters(body.get("parameters"), errors)
    raw = body.get("tasks")
    if not isinstance(raw, dict) or not raw:
        got = "nothing" if raw is None else type_name(raw) if not isinstance(raw, dict) else "{}"
        errors.append(f"tasks must be an object with at least one task, got {got}")
        raw = {}
    defs = parse_tasks(raw, "tasks", errors)
    templates = expand(defs, params, errors)
    check(errors, "invalid DAG")
    return DagSpec(tag=tag, parameters=params, tasks=templates)


def generated_tasks(
    stdout: str,
    params: dict[str, list[str]],
    generator: str,
    children: list[str],
    existing: set[str] | dict[str, Any],
) -> tuple[list[TaskTemplate], list[tuple[str, str, bool]]]:
    """Tasks a generator printed, expanded with the run's parameters and placed after it.

    Each new task gets the generator as a parent and the generator's ``children`` as children,
    so everything downstream of the generator waits for them. Their own ``parents`` and
    ``children`` may only name other tasks of the same output. Returns the templates and the
    extra (new task, existing child, required) edges; raises BadRequest on bad output.
    """
    errors: list[str] = []
    try:
        raw = orjson.loads(stdout)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the output is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BadRequest(f"the output must be a JSON object of tasks, got {type_name(raw)}")
    defs = parse_tasks(raw, "output", errors)
    below = set(children)
    for d in defs:  # naming the generator or its children again is harmless: they are implied
        d.parents = [p for p in d.parents if p != generator]
        d.children = [c for c in d.children if c not in below]
    templates = expand(defs, params, errors, taken=existing, first_parent=generator)
    check(errors, "invalid generated tasks")
    edges = [(t.name, child, True) for t in templates for child in children]
    return templates, edges


def check(errors: list[str], summary: str) -> None:
    if errors:
        first = errors[0] if len(errors) == 1 else f"{len(errors)} problems"
        raise BadRequest(f"{summary}: {first}", details=list(errors))


# -- parsing --------------------------------------------------------------------------------


def parse_parameters(raw: Any, errors: list[str]) -> dict[str, list[str]]:
    """``{NAME: value | [values]}`` as lists of strings (numbers are accepted as strings)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errors.append(f"parameters must be an object, got {type_name(raw)}")
        return {}
    out: dict[str, list[str]] = {}
    for name, value in raw.items():
        where = f"parameters.{name}"
        if not name or "{" in name or "}" in name:
            errors.append(f"parameter name {name!r} must be non-empty without '{{' or '}}'")
            continue
        values = value if isinstance(value, list) else [value]
        if not values:
            errors.append(f"{where} must have at least one value")
            continue
        strings = []
        for i, v in enumerate(values):
            if isinstance(v, str):
                strings.append(v)
            elif isinstance(v, int | float) and not isinstance(v, bool):
                strings.append(str(v))
            else:
                at = f"{where}[{i}]" if isinstance(value, list) else where
                errors.append(f"{at} must be a string or a number, got {type_name(v)}")
        out[name] = strings
    return out


def parse_tasks(raw: dict[str, Any], where: str, errors: list[str]) -> list[TaskDef]:
    """Every task of ``{name: task}``; a task with errors still takes part in graph checks."""
    # One regex pass over all names at once; per name only when something is wrong.
    if not NAMES.fullmatch("\n".join(raw)):
        errors.extend(
            f"task name {name!r} must be 1-200 letters, digits, '_', '.' or '-'"
            for name in raw
            if not TASK_NAME.fullmatch(name)
        )
    return [parse_task(name, t, f"{where}.{name}", errors) for name, t in raw.items()]


def parse_task(name: str, raw: Any, where: str, errors: list[str]) -> TaskDef:
    # Hot for big DAGs: field paths are only formatted when there is something to report,
    # and absent fields do not cost a call.
    if not isinstance(raw, dict):
        errors.append(f"{where} must be an object, got {type_name(raw)}")
        raw = {}
    if not raw.keys() <= TASK_KEYS:
        errors.extend(f"{where}.{k} is not a known field of a task" for k in raw.keys() - TASK_KEYS)
    get = raw.get
    generator = get("isGenerator")
    if generator is None:
        generator = False
    elif not isinstance(generator, bool):
        errors.append(f"{where}.isGenerator must be true or false, got {type_name(generator)}")
        generator = False
    retries = get("maxRetries")
    if retries is not None:
        retries = number(retries, where, "maxRetries", errors, 0, True, MAX_RETRIES)
    interval = get("retryIntervalSeconds")
    if interval is not None:
        interval = number(interval, where, "retryIntervalSeconds", errors, 0, False, 7 * 86400)
    parents = get("parents")
    if parents is not None:
        parents = names(parents, where, "parents", errors)
    children = get("children")
    if children is not None:
        children = names(children, where, "children", errors)
    d = TaskDef(name, {}, (), (), 0.0, 0, None, None, retries or 0, interval or 0, generator,
                parents or (), children or ())  # fmt: skip
    parse_job(get("job"), where, errors, d)
    return d


def parse_job(raw: Any, task: str, errors: list[str], d: TaskDef) -> None:
    """``job``: argv ``command``, ``K=V`` ``environment``, resources; ``image`` means docker."""
    if not isinstance(raw, dict):
        got = "nothing" if raw is None else type_name(raw)
        errors.append(f"{task}.job is required and must be an object, got {got}")
        return
    where = task + ".job"
    if not raw.keys() <= JOB_KEYS:
        errors.extend(f"{where}.{k} is not a known field of a job" for k in raw.keys() - JOB_KEYS)
    get = raw.get
    command = get("command")
    if not isinstance(command, list) or not command:
        got = "nothing" if command is None else type_name(command)
        errors.append(f"{where}.command must be a non-empty array of strings, got {got}")
    elif not all(map(isinstance, command, repeat(str))):
        errors.append(f"{where}.command must hold only strings")
    else:
        d.command = command
    env = get("environment")
    if env is None:
        env = []
    elif not isinstance(env, list):
        errors.append(f"{where}.environment must be an array of 'NAME=value' strings")
        env = []
    if any(isinstance(e, dict) for e in env):
        env = [secret_entry(e) for e in env]
    for i, entry in enumerate(env):
        if not isinstance(entry, str) or entry.find("=") < 1:
            errors.append(f"{where}.environment[{i}] must be a 'NAME=value' string, got {entry!r}")
            env = []
            break
    d.environment = env
    # One C-level scan per list instead of a Python loop over every argument.
    d.templated = "{{" in "\0".join(d.command) or (bool(env) and "{{" in "\0".join(env))
    if (cores := get("cores")) is not None:
        d.cpus = number(cores, where, "cores", errors, 0.0, False, 4096)
    if (memory := get("memoryMB")) is not None:
        d.memory_mb = number(memory, where, "memoryMB", errors, 0, True, 1 << 30)
    if (timeout := get("timeoutSeconds")) is not None:
        timeout = number(timeout, where, "timeoutSeconds", errors, None, False, 366 * 86400)
        if timeout is not None and timeout <= 0:
            errors.append(f"{where}.timeoutSeconds must be more than 0")
            timeout = None
        d.timeout = timeout
    image = get("image")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        errors.append(f"{where}.image must be a non-empty string")
        image = None
    d.image = image
    if (runner := get("runner")) is not None:
        if runner not in CONTAINER_RUNNERS:
            errors.append(f"{where}.runner must be one of {', '.join(CONTAINER_RUNNERS)}")
        elif image is None:
            errors.append(f"{where}.runner needs an image: only container jobs have a runner")
        else:
            d.runner = runner
    if (constraints := get("constraints")) is not None:
        if not isinstance(constraints, list) or not all(map(isinstance, constraints, repeat(str))):
            errors.append(f"{where}.constraints must be an array of strings")
        else:
            d.constraints = tuple(constraints)
    d.job = raw  # as given; readers add Daggy's default "environment": []


@functools.lru_cache(maxsize=1024)
def decimal(text: str, integer: bool, maximum: float) -> int | float | None:
    """A valid number written as a string, else None; big DAGs repeat the same few ("1")."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if not math.isfinite(value) or not 0 <= value <= maximum:
        return None
    if value.is_integer():
        return int(value)
    return None if integer else value


def names(raw: Any, where: str, key: str, errors: list[str]) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(map(isinstance, raw, repeat(str))):
        errors.append(f"{where}.{key} must be an array of task names")
        return []
    return raw


def number(
    raw: Any, where: str, key: str, errors: list[str], default: Any, integer: bool, maximum: float
) -> Any:
    """A number from 0 to ``maximum``, as a JSON number or a string of one (Daggy sends "1")."""
    if type(raw) is int and 0 <= raw <= maximum:
        return raw
    if type(raw) is str:
        value = decimal(raw, integer, maximum)
        if value is not None:
            return value
    elif type(raw) is float and math.isfinite(raw) and 0 <= raw <= maximum:
        if not integer:
            return raw
        if raw.is_integer():
            return int(raw)
    kind = "an integer" if integer else "a number"
    errors.append(f"{where}.{key} must be {kind} from 0 to {maximum:g}, got {raw!r}")
    return default


def secret_entry(entry: Any) -> Any:
    """``{"name": NAME, "secret": SECRET}``: a variable whose value is a named secret, kept as
    its reference (the value is put in only when an attempt starts)."""
    if (
        isinstance(entry, dict)
        and set(entry) == {"name", "secret"}
        and isinstance(entry["name"], str)
        and isinstance(entry["secret"], str)
        and SECRET_NAME.fullmatch(entry["secret"])
        and entry["name"]
        and "=" not in entry["name"]
    ):
        return f"{entry['name']}={SECRET_MARK}{entry['secret']}"
    return entry
