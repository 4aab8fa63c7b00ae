"""The engine's in-memory view of active runs: nodes, edges, live attempts.

The store is the truth; this is an index of it for the runs that can still change, so that a
finished task re-examines only its own children.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from taskd.models import (
    TASK_TERMINAL,
    AttemptState,
    JobSpec,
    RetryPolicy,
    RunState,
    TaskState,
    TaskTemplate,
    now_ns,
)
from taskd.runners.base import AttemptContext, Started


@dataclass(eq=False)
class LiveAttempt:
    """An attempt the engine is watching."""

    id: int
    uuid: str
    task: TaskNode
    number: int
    ctx: AttemptContext
    cpuset: tuple[int, ...] = ()
    started: Started | None = None
    stop_as: AttemptState | None = None  # set when taskd stops it: killed, timed_out, lost
    stop_reason: str | None = None
    reported: str | None = None
    watcher: asyncio.Task[None] | None = None
    deadline: asyncio.TimerHandle | None = None
    created_ns: int = field(default_factory=now_ns)
    # Columns of its start the store did not take (a failed write): written with its end.
    unwritten: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class TaskNode:
    id: int
    run: RunNode
    name: str
    template: str
    state: TaskState
    job: JobSpec
    retry: RetryPolicy
    max_runtime: float | None
    explicit_success: bool
    generator: bool
    attempts: int
    retry_at: int | None
    extra: dict[str, Any]
    parents: list[tuple[TaskNode, bool]] = field(default_factory=list)
    children: list[tuple[TaskNode, bool]] = field(default_factory=list)
    live: LiveAttempt | None = None
    timer: asyncio.TimerHandle | None = None
    blocking: int = 0  # parents not finished yet; a waiting task is looked at when it is 0
    passed_since: float | None = None  # loop time it was first passed over for lack of room

    @property
    def terminal(self) -> bool:
        return self.state in TASK_TERMINAL


@dataclass(eq=False)
class RunNode:
    id: int
    uuid: str
    kind: str
    name: str
    state: RunState
    kill_requested: bool
    trigger: str
    params: dict[str, Any]
    extra: dict[str, Any]
    tasks: dict[int, TaskNode] = field(default_factory=dict)
    by_name: dict[str, TaskNode] = field(default_factory=dict)
    unfinished: int = 0  # tasks not yet terminal
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, task: TaskNode) -> None:
        self.tasks[task.id] = task
        self.by_name[task.name] = task
        if not task.terminal:
            self.unfinished += 1


def task_from_row(run: RunNode, row: Any) -> TaskNode:
    return TaskNode(
        id=row["id"],
        run=run,
        name=row["name"],
        template=row["template"],
        state=TaskState(row["state"]),
        job=JobSpec.from_doc(orjson.loads(row["job"])),
        retry=RetryPolicy(row["max_attempts"], row["backoff_base"], row["backoff_exponent"]),
        max_runtime=row["max_runtime"],
        explicit_success=bool(row["explicit_success"]),
        generator=bool(row["generator"]),
        attempts=row["attempts"],
        retry_at=row["retry_at"],
        extra=orjson.loads(row["extra"]),
    )


def run_from_row(row: Any) -> RunNode:
    return RunNode(
        id=row["id"],
        uuid=row["uuid"],
        kind=row["kind"],
        name=row["name"],
        state=RunState(row["state"]),
        kill_requested=bool(row["kill_requested"]),
        trigger=row["trigger"],
        params=orjson.loads(row["params"]),
        extra=orjson.loads(row["extra"]),
    )


def link(parent: TaskNode, child: TaskNode, required: bool) -> None:
    parent.children.append((child, required))
    child.parents.append((parent, required))
    if not parent.terminal:
        child.blocking += 1


def add_tasks(
    run: RunNode,
    templates: list[TaskTemplate],
    ids: dict[str, int],
    edges: list[tuple[str, str, bool]],
) -> list[TaskNode]:
    """Add the templates' tasks and edges to the run's graph (and nothing else: may run
    in a thread for a run nobody sees yet)."""
    # Written for runs of 100,000 tasks: positional fields, and the run's maps and the
    # links filled here rather than a call per task (the same as run.add and link).
    nodes = []
    tasks, by_name = run.tasks, run.by_name
    waiting, ready = TaskState.WAITING, TaskState.READY
    for t in templates:
        name = t.name
        node = TaskNode(ids[name], run, name, t.template or name,
                        waiting if t.parents else ready, t.job, t.retry, t.max_runtime,
                        t.explicit_success, t.generator, 0, None, t.extra)  # fmt: skip
        tasks[node.id] = node
        by_name[name] = node
        nodes.append(node)
    run.unfinished += len(nodes)  # new tasks are never terminal
    for t, node in zip(templates, nodes, strict=True):
        if t.parents:
            ups = node.parents
            for parent_name, required in t.parents:
                parent = by_name[parent_name]
                parent.children.append((node, required))
                ups.append((parent, required))
                if parent.state not in TASK_TERMINAL:
                    node.blocking += 1
    for parent, child, required in edges:
        link(run.by_name[parent], run.by_name[child], required)
    return nodes
