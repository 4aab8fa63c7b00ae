"""Expanding a parsed Daggy spec: parameter combinations, edges, cycles, task templates.

Pure: no I/O. A task whose ``job.command`` or ``job.environment`` mentions ``{{NAME}}``
placeholders becomes one task per combination of those parameters' values (cartesian
product, in the order the parameters are declared, the last varying fastest), named
``<task>_<i>``; a task that mentions none keeps its name. An edge to a task name connects to
every one of its expansions. Parsing is in ``taskd.dagruns.spec``.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from dataclasses import dataclass
from typing import Any

from taskd.dag import find_cycle
from taskd.models import JobSpec, RetryPolicy, TaskTemplate, default_container_runner

PLACEHOLDER = re.compile(r"\{\{([^{}]+)\}\}")

# Bounds that keep one request from exhausting memory: a few parameters with many values
# multiply quickly, and so do edges between two expanded tasks.
MAX_TASKS = 200_000
MAX_EDGES = 2_000_000


@dataclass(slots=True)
class TaskDef:
    """One task as the spec defines it, before parameter expansion."""

    name: str
    job: dict[str, Any]  # as given (cores/memoryMB kept as sent), for the echo
    command: list[str] | tuple[()]
    environment: list[str] | tuple[()]
    cpus: float
    memory_mb: int
    timeout: float | None
    image: str | None
    max_retries: int
    retry_interval: float
    generator: bool
    parents: list[str] | tuple[()]  # as given; () when absent (no allocation per task)
    children: list[str] | tuple[()]
    templated: bool = False  # command or environment has a {{...}} placeholder
    runner: str | None = None  # a container runner named by the job (else the default)
    constraints: tuple[str, ...] = ()  # swarm placement constraints


# -- expansion ------------------------------------------------------------------------------


def mentioned(d: TaskDef, params: dict[str, list[str]]) -> list[str]:
    """The parameters a task's command and environment mention, in declaration order."""
    found: set[str] = set()
    for s in itertools.chain(d.command, d.environment):
        if "{{" in s:
            found.update(n for n in PLACEHOLDER.findall(s) if n in params)
    return [p for p in params if p in found] if found else []


def compile_str(s: str, index: dict[str, int]) -> str:
    """A string as a ``str.format`` pattern over a combination of parameter values."""
    pieces = PLACEHOLDER.split(s)
    out = []
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            out.append(escape(piece))
        elif piece in index:
            out.append(f"{{{index[piece]}}}")
        else:
            out.append(escape("{{" + piece + "}}"))  # not a parameter: kept as written
    return "".join(out)


def escape(literal: str) -> str:
    return literal.replace("{", "{{").replace("}", "}}")


def expand(
    defs: list[TaskDef],
    params: dict[str, list[str]],
    errors: list[str],
    *,
    taken: set[str] | dict[str, Any] = frozenset(),
    first_parent: str | None = None,
) -> list[TaskTemplate]:
    """Check the graph, expand every task and build the templates (none if anything is wrong).

    ``taken`` are names already used in the run; ``first_parent`` is a parent every task gets
    (a generator). Written for DAGs of 10,000s of tasks: the common cases (no parameters,
    tasks listed parents first) take the short paths.
    """
    known = {d.name: d for d in defs}
    parents_of = graph(defs, known, errors)

    uses: dict[str, list[str]] = {}
    for d in defs:
        if d.templated and (u := mentioned(d, params)):
            uses[d.name] = u
    sizes = {n: math.prod(len(params[p]) for p in u) for n, u in uses.items()}
    total = len(defs) - len(sizes) + sum(sizes.values())
    edges = 0
    if sizes:
        edges = sum(sizes.get(p, 1) * sizes.get(c, 1) for c, ps in parents_of.items() for p in ps)
    if total > MAX_TASKS or edges > MAX_EDGES:
        errors.append(
            f"the DAG expands to {total} tasks and {edges} edges;"
            f" at most {MAX_TASKS} tasks and {MAX_EDGES} edges are allowed"
        )
        return []
    expansions = {n: [f"{n}_{i}" for i in range(size)] for n, size in sizes.items()}
    check_names(known, expansions, taken, errors)
    if errors:
        return []

    templates: list[TaskTemplate] = []
    head = [(first_parent, True)] if first_parent else []
    # One (name, required) pair per parent, shared by all its children.
    edge = {n: (n, True) for n in known if n not in expansions}
    for got in expansions.values():
        edge.update((n, (n, True)) for n in got)
    for d in defs:
        ps = parents_of[d.name]
        if sizes:
            parents = [edge[n] for p in ps for n in expansions.get(p, (p,))]
        else:
            parents = [edge[p] for p in ps]
        if head:
            parents[:0] = head
        build(d, params, uses.get(d.name, ()), expansions.get(d.name, ()), parents, templates)
    return templates


def graph(
    defs: list[TaskDef], known: dict[str, TaskDef], errors: list[str]
) -> dict[str, list[str]]:
    """Each task's parents (from both ``parents`` and ``children``); unknown names and cycles
    are reported."""
    referenced: set[str] = set()
    for d in defs:
        referenced.update(d.parents)
        referenced.update(d.children)
    if not referenced <= known.keys():
        for d in defs:
            for key, listed in (("parent", d.parents), ("child", d.children)):
                errors.extend(
                    f"task {d.name!r} names {key} {n!r}, which is not a task here"
                    for n in listed
                    if n not in known
                )
    # The lists as given are used as they are; a list is copied only to add to it.
    parents_of: dict[str, Any] = {d.name: d.parents for d in defs}
    if not referenced <= known.keys():
        parents_of = {d.name: [p for p in d.parents if p in known] for d in defs}
    owned: set[str] = set()
    for d in defs:
        for c in d.children:
            if c in known:
                if c not in owned:
                    parents_of[c] = list(parents_of[c])
                    owned.add(c)
                parents_of[c].append(d.name)
    for name, ps in parents_of.items():
        if len(ps) > 1 and len(set(ps)) < len(ps):
            parents_of[name] = list(dict.fromkeys(ps))  # an edge given twice counts once
    # Tasks listed parents first cannot form a cycle; only other orders need the search.
    order = {n: i for i, n in enumerate(parents_of)}
    if any(order[p] >= order[c] for c, ps in parents_of.items() for p in ps):
        cycle = find_cycle(parents_of)
        if cycle:
            errors.append("the tasks depend on each other in a cycle: " + " -> ".join(cycle))
    return parents_of


def check_names(
    known: dict[str, TaskDef],
    expansions: dict[str, list[str]],
    taken: set[str] | dict[str, Any],
    errors: list[str],
) -> None:
    """Every final task name once, and none already taken in the run."""
    final: dict[str, str] = {n: n for n in known if n not in expansions}
    for defined, got in expansions.items():
        for name in got:
            if name in final:
                errors.append(f"task name {name!r} comes from both {final[name]!r} and {defined!r}")
            else:
                final[name] = defined
    if taken:
        errors.extend(
            f"task {name!r} (from {final[name]!r}) already exists in this run"
            for name in final.keys() & taken
        )


def with_tag(image: str) -> str:
    """``name`` means ``name:latest``: pulling a bare name would fetch every tag."""
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last or "@" in last else f"{image}:latest"


def build(
    d: TaskDef,
    params: dict[str, list[str]],
    uses: list[str],
    names: list[str],
    parents: list[tuple[str, bool]],
    out: list[TaskTemplate],
) -> None:
    """Add the templates of one defined task: one per combination of its parameters' values."""
    retry = retry_policy(d.max_retries, d.retry_interval)
    image = with_tag(d.image) if d.image else None
    runner = (d.runner or default_container_runner()) if image else "local"
    cpus = float(d.cpus)
    if not uses:  # the common case, kept cheap for DAGs of many distinct tasks
        job = JobSpec(runner, tuple(d.command), image, None, env_pairs(d.environment), cpus,
                      d.memory_mb, constraints=d.constraints)  # fmt: skip
        out.append(template(d, d.name, job, retry, parents, d.job))
        return
    index = {p: i for i, p in enumerate(uses)}
    command = [compile_str(s, index) for s in d.command]
    environment = [compile_str(s, index) for s in d.environment]
    combos = itertools.product(*(params[p] for p in uses))
    for name, combo in zip(names, combos, strict=True):
        argv = [c.format(*combo) for c in command]
        env = [c.format(*combo) for c in environment]
        job = JobSpec(runner, tuple(argv), image, None, env_pairs(env), cpus, d.memory_mb,
                      constraints=d.constraints)  # fmt: skip
        echo = {**d.job, "command": argv, "environment": env}
        out.append(template(d, name, job, retry, list(parents), echo))


def template(
    d: TaskDef,
    name: str,
    job: JobSpec,
    retry: RetryPolicy,
    parents: list[tuple[str, bool]],
    job_echo: dict[str, Any],
) -> TaskTemplate:
    echo = {
        "maxRetries": d.max_retries,
        "retryIntervalSeconds": d.retry_interval,
        "job": job_echo,
        "isGenerator": d.generator,
    }
    return TaskTemplate(name, job, retry, d.timeout, False, d.generator, d.name, parents, echo)


def env_pairs(env: list[str]) -> tuple[tuple[str, str], ...]:
    if not env:
        return ()
    return tuple(tuple(e.split("=", 1)) for e in env)  # type: ignore[misc]


@functools.lru_cache(maxsize=256)
def retry_policy(max_retries: int, interval: float) -> RetryPolicy:
    """``maxRetries`` extra attempts, ``retryIntervalSeconds`` apart (SPEC §1.2)."""
    return RetryPolicy(max_retries + 1, float(interval), 1.0)
