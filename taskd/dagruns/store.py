"""Read views of DAG runs (Daggy): the run list with task counts, one run with everything.

Each view is a fixed number of queries whatever the size of the run (no N+1). States are the
core's; the API family maps them to its own names. A DAG run is known to Daggy clients by its
number among DAG runs (``runs.kind_no``: 0, 1, 2, ...), not by its run id, which every kind of
run shares; the functions here take and answer that number.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson

from taskd.errors import NotFound
from taskd.models import RUN_ACTIVE, RunKind
from taskd.store.output import Chunk, assemble

ACTIVE = tuple(sorted(RUN_ACTIVE))
STREAMS = ("stdout", "stderr", "executor")


@dataclass
class RunSummary:
    id: int  # the DAG run number
    tag: str
    state: str
    created_at: int
    last_update: int
    task_counts: dict[str, int]  # core task state -> number of tasks
    run_id: int = 0  # the core run id
    uuid: str = ""


@dataclass
class TaskRow:
    id: int
    name: str
    state: str
    echo: dict[str, Any]  # what the family kept of the task's definition
    parents: list[str]
    children: list[str]


@dataclass
class AttemptRow:
    task_id: int
    number: int
    state: str
    exit_code: int | None
    started_at: int
    ended_at: int | None
    logs: dict[str, str]  # stream -> captured text


@dataclass
class RunView:
    id: int  # the DAG run number
    tag: str
    state: str
    tasks: list[TaskRow]
    attempts: list[AttemptRow]  # finished attempts, by task then number
    changes: list[tuple[str, int]]  # the run's own (state, at), oldest first


def number_run(db: sqlite3.Connection, run_id: int) -> int:
    """Give a new DAG run the next DAG run number; runs in the transaction that inserts it."""
    (nxt,) = db.execute(
        "INSERT INTO kind_counters (kind, next) VALUES (?, 1)"
        " ON CONFLICT (kind) DO UPDATE SET next = next + 1 RETURNING next",
        (RunKind.DAG,),
    ).fetchone()
    db.execute("UPDATE runs SET kind_no = ? WHERE id = ?", (nxt - 1, run_id))
    return nxt - 1


def list_runs(
    db: sqlite3.Connection,
    include_finished: bool,
    counted: Collection[int] = (),
    counted_uuids: Collection[str] = (),
) -> list[RunSummary]:
    """DAG runs, oldest first: only those still queued or running unless ``include_finished``.

    The tasks of the runs in ``counted`` (run ids) and ``counted_uuids`` are not counted here:
    the caller knows them.
    """
    where = "kind = ?"
    args: list[Any] = [RunKind.DAG]
    if not include_finished:
        where += f" AND state IN ({','.join('?' * len(ACTIVE))})"
        args.extend(ACTIVE)
    runs = {
        r["id"]: RunSummary(r["kind_no"], r["name"], r["state"], r["created_at"],
                            r["updated_at"], {}, r["id"], r["uuid"])
        for r in db.execute(
            "SELECT id, uuid, kind_no, name, state, created_at, updated_at FROM runs"
            f" WHERE {where} ORDER BY id",
            args,
        )
    }  # fmt: skip
    if counted:
        where += f" AND id NOT IN ({','.join('?' * len(counted))})"
        args.extend(counted)
    if counted_uuids:
        where += f" AND uuid NOT IN ({','.join('?' * len(counted_uuids))})"
        args.extend(counted_uuids)
    # Counted per (run, state) in one pass over the runs' tasks; the latest task change
    # is the run's "last update" while it runs.
    for r in db.execute(
        "SELECT run_id, state, COUNT(*) AS n, MAX(updated_at) AS last FROM tasks"
        f" WHERE run_id IN (SELECT id FROM runs WHERE {where}) GROUP BY run_id, state",
        args,
    ):
        run = runs.get(r["run_id"])
        if run is not None:  # a run created between the two statements is not listed
            run.task_counts[r["state"]] = r["n"]
            run.last_update = max(run.last_update, r["last"])
    return list(runs.values())


def task_counts(
    db: sqlite3.Connection, run_ids: Collection[int]
) -> dict[int, tuple[dict[str, int], int]]:
    """Each run's task counts by state and the latest change of its tasks."""
    out: dict[int, tuple[dict[str, int], int]] = {r: ({}, 0) for r in run_ids}
    for r in db.execute(
        "SELECT run_id, state, COUNT(*) AS n, MAX(updated_at) AS last FROM tasks"
        f" WHERE run_id IN ({','.join('?' * len(out))}) GROUP BY run_id, state",
        tuple(out),
    ):
        counts, last = out[r["run_id"]]
        counts[r["state"]] = r["n"]
        out[r["run_id"]] = (counts, max(last, r["last"]))
    return out


def dag_run(db: sqlite3.Connection, number: int) -> sqlite3.Row:
    """The run row (``id``, ``kind_no``, ``name``, ``state``) of DAG run ``number``, or
    NotFound."""
    row = db.execute(
        "SELECT id, kind_no, name, state FROM runs WHERE kind = ? AND kind_no = ?",
        (RunKind.DAG, number),
    ).fetchone()
    if row is None:
        raise NotFound(f"no DAG run {number}")
    return row


def run_view(db: sqlite3.Connection, number: int) -> RunView:
    """One run with its tasks, edges, finished attempts and their logs, and its state changes."""
    run = dag_run(db, number)
    run_id = run["id"]
    tasks = {
        r["id"]: TaskRow(r["id"], r["name"], r["state"], orjson.loads(r["extra"]), [], [])
        for r in db.execute(
            "SELECT id, name, state, extra FROM tasks WHERE run_id = ? ORDER BY id", (run_id,)
        )
    }
    for parent, child in db.execute(
        "SELECT parent, child FROM edges WHERE run_id = ? ORDER BY parent, child", (run_id,)
    ):
        tasks[child].parents.append(tasks[parent].name)
        tasks[parent].children.append(tasks[child].name)
    attempts = {
        r["id"]: AttemptRow(
            r["task_id"],
            r["number"],
            r["state"],
            r["exit_code"],
            r["started_at"] or r["created_at"],
            r["ended_at"],
            {},
        )
        for r in db.execute(
            "SELECT id, task_id, number, state, exit_code, created_at, started_at, ended_at"
            " FROM attempts WHERE run_id = ? AND ended_at IS NOT NULL ORDER BY task_id, number",
            (run_id,),
        )
    }
    chunks: dict[tuple[int, str], list[Chunk]] = defaultdict(list)
    for r in db.execute(
        "SELECT c.id, c.attempt_id, c.stream, c.offset, c.head, c.data FROM output_chunks c"
        " JOIN attempts a ON a.id = c.attempt_id"
        " WHERE a.run_id = ? AND a.ended_at IS NOT NULL ORDER BY c.attempt_id, c.id",
        (run_id,),
    ):
        chunks[r["attempt_id"], r["stream"]].append(
            Chunk(r["id"], r["stream"], r["offset"], bool(r["head"]), r["data"])
        )
    for (attempt_id, stream), parts in chunks.items():
        if attempt_id in attempts:  # ended between the two statements: listed next time
            attempts[attempt_id].logs[stream] = assemble(parts).decode(errors="replace")
    changes = [
        (r["state"], r["at"])
        for r in db.execute(
            "SELECT state, at FROM state_changes WHERE run_id = ? AND task_id IS NULL ORDER BY id",
            (run_id,),
        )
    ]
    return RunView(run["kind_no"], run["name"], run["state"], list(tasks.values()),
                   list(attempts.values()), changes)  # fmt: skip


def task(db: sqlite3.Connection, number: int, name: str) -> TaskRow:
    """One task of a DAG run with its parents and children, or NotFound."""
    run_id = dag_run(db, number)["id"]
    row = db.execute(
        "SELECT id, name, state, extra FROM tasks WHERE run_id = ? AND name = ?", (run_id, name)
    ).fetchone()
    if row is None:
        raise NotFound(f"DAG run {number} has no task {name!r}")
    parents = [
        r[0]
        for r in db.execute(
            "SELECT t.name FROM edges e JOIN tasks t ON t.id = e.parent WHERE e.child = ?"
            " ORDER BY e.parent",
            (row["id"],),
        )
    ]
    children = [
        r[0]
        for r in db.execute(
            "SELECT t.name FROM edges e JOIN tasks t ON t.id = e.child WHERE e.parent = ?"
            " ORDER BY e.child",
            (row["id"],),
        )
    ]
    return TaskRow(row["id"], row["name"], row["state"], orjson.loads(row["extra"]), parents,
                   children)  # fmt: skip


def task_state(db: sqlite3.Connection, number: int, name: str) -> str:
    """The core state of one task of a DAG run, or NotFound."""
    run_id = dag_run(db, number)["id"]
    row = db.execute(
        "SELECT state FROM tasks WHERE run_id = ? AND name = ?", (run_id, name)
    ).fetchone()
    if row is None:
        raise NotFound(f"DAG run {number} has no task {name!r}")
    return row["state"]
