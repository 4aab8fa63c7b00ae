"""Runs, tasks, edges, attempts and their state changes.

The engine decides; these functions write what it decided, a whole batch in one transaction
(``apply``), each change together with its state-change row.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

import orjson

from taskd.models import RUN_ACTIVE, JobSpec, RunState, TaskState, TaskTemplate


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass
class RunPlan:
    """A run to create: what the API family resolved from its request."""

    kind: str
    name: str
    trigger: str
    uuid: str
    tasks: list[TaskTemplate]
    params: dict[str, Any] = field(default_factory=dict)
    task_filter: str | None = None
    definition_version: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Changes:
    """One batch of decided state changes, written in one transaction."""

    at: int
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    attempts: dict[int, dict[str, Any]] = field(default_factory=dict)
    new_attempts: list[dict[str, Any]] = field(default_factory=list)
    history: list[tuple[int, int | None, str]] = field(default_factory=list)
    ledger: list[tuple[str, int, str, int | None]] = field(default_factory=list)
    # tasks a generator added: (run_id, templates, name -> id of every task involved,
    # extra edges (parent name, child name, required) to tasks that already exist)
    generated: list[tuple[int, list[TaskTemplate], dict[str, int], list[tuple[str, str, bool]]]] = (
        field(default_factory=list)
    )
    # more writes for the same transaction: fn(db) (the notification outbox of ended runs)
    also: list[Any] = field(default_factory=list)

    def run(self, run_id: int, **cols: Any) -> None:
        self.runs.setdefault(run_id, {}).update(cols)
        if "state" in cols:
            self.history.append((run_id, None, str(cols["state"])))

    def task(self, run_id: int, task_id: int, **cols: Any) -> None:
        self.tasks.setdefault(task_id, {}).update(cols)
        if "state" in cols:
            self.history.append((run_id, task_id, str(cols["state"])))

    def attempt(self, attempt_id: int, **cols: Any) -> None:
        self.attempts.setdefault(attempt_id, {}).update(cols)

    def __bool__(self) -> bool:
        return bool(
            self.runs
            or self.tasks
            or self.attempts
            or self.new_attempts
            or self.ledger
            or self.generated
        )


def initial_state(template: TaskTemplate) -> TaskState:
    return TaskState.WAITING if template.parents else TaskState.READY


def insert_tasks(
    db: sqlite3.Connection,
    run_id: int,
    templates: list[TaskTemplate],
    ids: dict[str, int],
    at: int,
    edges: list[tuple[str, str, bool]] = (),
) -> None:
    """Insert tasks with the ids the engine gave them, and their edges.

    ``ids`` maps every name involved (new tasks and tasks already in the run) to its id;
    ``edges`` are extra (parent, child, required) edges to tasks that already exist.
    """
    # Rows built in one pass, each task's first state computed once: for 100,000 tasks the
    # Python around the SQL costs as much as the SQL.
    waiting, ready = str(TaskState.WAITING), str(TaskState.READY)
    task_rows, change_rows, edge_rows = [], [], []
    for t in templates:
        task_id = ids[t.name]
        state = waiting if t.parents else ready
        retry = t.retry
        task_rows.append((
            task_id, run_id, t.name, t.template or t.name, state, job_json(t.job),
            retry.max_attempts, retry.backoff_base, retry.backoff_exponent, t.max_runtime,
            int(t.explicit_success), int(t.generator), dumps(t.extra), at,
        ))  # fmt: skip
        change_rows.append((run_id, task_id, state, at))
        if t.parents:
            edge_rows.extend((run_id, ids[parent], task_id, int(required))
                             for parent, required in t.parents)  # fmt: skip
    edge_rows.extend((run_id, ids[p], ids[c], int(r)) for p, c, r in edges)
    db.executemany(
        "INSERT INTO tasks (id, run_id, name, template, state, job, max_attempts, backoff_base,"
        " backoff_exponent, max_runtime, explicit_success, generator, extra, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        task_rows,
    )
    db.executemany(
        "INSERT INTO state_changes (run_id, task_id, state, at) VALUES (?, ?, ?, ?)", change_rows
    )
    db.executemany(
        "INSERT OR IGNORE INTO edges (run_id, parent, child, required) VALUES (?, ?, ?, ?)",
        edge_rows,
    )


def job_json(job: JobSpec) -> str:
    """``job.to_doc()`` as JSON, written without the intermediate lists (orjson writes
    tuples as arrays): the same text, for a fraction of the cost on big DAGs."""
    if job.volumes:
        return dumps(job.to_doc())
    return orjson.dumps({
        "runner": job.runner, "command": job.command, "image": job.image,
        "script": job.script, "env": job.env, "cpus": job.cpus, "memory_mb": job.memory_mb,
        "pin_cores": job.pin_cores, "volumes": [], "pull_timeout": job.pull_timeout,
        "workdir": job.workdir, "constraints": job.constraints,
        "preferences": job.preferences,
    }).decode()  # fmt: skip


def insert_run(db: sqlite3.Connection, plan: RunPlan, ids: dict[str, int], at: int) -> int:
    cur = db.execute(
        "INSERT INTO runs (uuid, kind, name, definition_version, trigger, params, task_filter,"
        " state, extra, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            plan.uuid, plan.kind, plan.name, plan.definition_version, plan.trigger,
            dumps(plan.params), plan.task_filter, RunState.QUEUED, dumps(plan.extra), at, at,
        ),
    )  # fmt: skip
    run_id = cur.lastrowid
    assert run_id is not None
    db.execute(
        "INSERT INTO state_changes (run_id, task_id, state, at) VALUES (?, NULL, ?, ?)",
        (run_id, RunState.QUEUED, at),
    )
    insert_tasks(db, run_id, plan.tasks, ids, at)
    return run_id


def max_task_id(db: sqlite3.Connection) -> int:
    return db.execute("SELECT COALESCE(MAX(id), 0) FROM tasks").fetchone()[0]


def _update(db: sqlite3.Connection, table: str, rows: dict[int, dict[str, Any]]) -> None:
    # Group rows by the columns they set, so each shape is one executemany.
    shapes: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for row_id, cols in rows.items():
        keys = tuple(sorted(cols))
        shapes.setdefault(keys, []).append((*(cols[k] for k in keys), row_id))
    for keys, params in shapes.items():
        sets = ", ".join(f"{k} = ?" for k in keys)
        db.executemany(f"UPDATE {table} SET {sets} WHERE id = ?", params)


def apply(db: sqlite3.Connection, ch: Changes) -> list[int]:
    """Write a batch of changes; returns the ids of the new attempts, in order."""
    for run_id, templates, ids, edges in ch.generated:
        insert_tasks(db, run_id, templates, ids, ch.at, edges)
    for cols in ch.runs.values():
        cols.setdefault("updated_at", ch.at)
    for cols in ch.tasks.values():
        cols.setdefault("updated_at", ch.at)
    _update(db, "runs", ch.runs)
    _update(db, "tasks", ch.tasks)
    ids = []
    for a in ch.new_attempts:
        cur = db.execute(
            "INSERT INTO attempts (uuid, run_id, task_id, number, state, runner, token_hash,"
            " cpuset, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                a["uuid"], a["run_id"], a["task_id"], a["number"], a["state"], a["runner"],
                a["token_hash"], a.get("cpuset"), ch.at,
            ),
        )  # fmt: skip
        ids.append(cur.lastrowid)
    _update(db, "attempts", ch.attempts)
    if ch.history:
        db.executemany(
            "INSERT INTO state_changes (run_id, task_id, state, at) VALUES (?, ?, ?, ?)",
            [(run_id, task_id, state, ch.at) for run_id, task_id, state in ch.history],
        )
    for definition, slot, status, run_id in ch.ledger:
        db.execute(
            "INSERT INTO ledger (definition, slot, status, run_id, recorded_at)"
            " VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (definition, slot) DO UPDATE SET status = excluded.status,"
            " run_id = excluded.run_id",
            (definition, slot, status, run_id, ch.at),
        )
    for write in ch.also:
        write(db)
    return ids


# -- loading runs into the engine ---------------------------------------------------------


@dataclass
class LoadedRun:
    run: sqlite3.Row
    tasks: list[sqlite3.Row]
    edges: list[sqlite3.Row]
    attempts: list[sqlite3.Row]  # the attempts still active (starting/running)


def load_runs(db: sqlite3.Connection, run_ids: list[int] | None = None) -> list[LoadedRun]:
    """Runs with their tasks, edges and active attempts: the given ids, or every active run."""
    if run_ids is None:
        marks = ",".join("?" * len(RUN_ACTIVE))
        runs = db.execute(
            f"SELECT * FROM runs WHERE state IN ({marks}) ORDER BY id", tuple(RUN_ACTIVE)
        ).fetchall()
    else:
        marks = ",".join("?" * len(run_ids))
        runs = db.execute(f"SELECT * FROM runs WHERE id IN ({marks})", run_ids).fetchall()
    out = []
    for run in runs:
        rid = run["id"]
        out.append(
            LoadedRun(
                run=run,
                tasks=db.execute(
                    "SELECT * FROM tasks WHERE run_id = ? ORDER BY id", (rid,)
                ).fetchall(),
                edges=db.execute("SELECT * FROM edges WHERE run_id = ?", (rid,)).fetchall(),
                attempts=db.execute(
                    "SELECT * FROM attempts WHERE run_id = ? AND state IN ('starting', 'running')",
                    (rid,),
                ).fetchall(),
            )
        )
    return out


def set_kill_requested(db: sqlite3.Connection, run_id: int, value: bool, at: int) -> None:
    db.execute(
        "UPDATE runs SET kill_requested = ?, updated_at = ? WHERE id = ?", (int(value), at, run_id)
    )


def report(db: sqlite3.Connection, attempt_uuid: str, status: str) -> bool:
    """Record a task's own report of success/failure; the first report wins."""
    cur = db.execute(
        "UPDATE attempts SET reported = ? WHERE uuid = ? AND reported IS NULL",
        (status, attempt_uuid),
    )
    return cur.rowcount > 0
