"""Read views of process runs and their attempts, and the task callbacks' writes.

Every list is read with a fixed number of queries whatever its length (no N+1).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import orjson

from taskd.errors import NotFound
from taskd.secrets import MASKER
from taskd.store.output import ENTRY_TABLES
from taskd.timefmt import iso_ms


def marks(values: Iterable[Any]) -> str:
    return ",".join("?" * len(list(values)))


def find_runs(
    db: sqlite3.Connection,
    kind: str,
    *,
    name: str | None = None,
    states: list[str] | None = None,
    start: int | None = None,
    end: int | None = None,
    limit: int | None = None,
) -> list[sqlite3.Row]:
    """Runs of a kind, newest first, filtered by name, states and creation time."""
    sql = ["SELECT * FROM runs WHERE kind = ?"]
    args: list[Any] = [kind]
    if name is not None:
        sql.append("AND name = ?")
        args.append(name)
    if states:
        sql.append(f"AND state IN ({marks(states)})")
        args.extend(states)
    if start is not None:
        sql.append("AND created_at >= ?")
        args.append(start)
    if end is not None:
        sql.append("AND created_at <= ?")
        args.append(end)
    sql.append("ORDER BY created_at DESC, id DESC")
    if limit is not None:
        sql.append("LIMIT ?")
        args.append(limit)
    return db.execute(" ".join(sql), args).fetchall()


def run_by_uuid(db: sqlite3.Connection, run_uuid: str, kind: str | None = None) -> sqlite3.Row:
    row = db.execute("SELECT * FROM runs WHERE uuid = ?", (run_uuid,)).fetchone()
    if row is None or (kind is not None and row["kind"] != kind):
        raise NotFound(f"no process with id {run_uuid}")
    return row


def attempts_of_runs(db: sqlite3.Connection, runs: list[Any]) -> dict[int, list[dict[str, Any]]]:
    """The Sundial task objects of each run (by run id), oldest attempt first (three queries)."""
    if not runs:
        return {}
    names = {r["id"]: (r["uuid"], r["name"]) for r in runs}
    which = f"a.run_id IN ({marks(names)})"
    rows = tuples(
        db,
        f"SELECT {TASK_COLUMNS} FROM attempts a JOIN tasks t ON t.id = a.task_id"
        f" WHERE {which} ORDER BY a.run_id, a.id",
        list(names),
    )
    logs, meta = entries(db, f"SELECT a.id FROM attempts a WHERE {which}", list(names))
    by_run: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        run_id = row[11]
        by_run.setdefault(run_id, []).append(task_object(row, *names[run_id], logs, meta))
    return by_run


def tuples(db: sqlite3.Connection, sql: str, args: list[Any]) -> list[tuple[Any, ...]]:
    # Plain tuples: a page of 100 processes holds some 10,000 attempts, and a Row per attempt
    # turned into a dict, then into the answer's dict, was most of the page's time.
    cur = db.cursor()
    cur.row_factory = None
    return cur.execute(sql, args).fetchall()


def entries(
    db: sqlite3.Connection, attempt_ids_sql: str, args: list[Any]
) -> tuple[dict[int, list[dict[str, Any]]], dict[int, list[dict[str, Any]]]]:
    """Log and metadata entries (Sundial's objects) by attempt id, of the attempts the
    ``attempt_ids_sql`` subquery selects."""
    logs: dict[int, list[dict[str, Any]]] = {}
    meta: dict[int, list[dict[str, Any]]] = {}
    for table, (key_a, key_b), id_key, into in (
        ("log_entries", ("source", "message"), "log_entry_id", logs),
        ("metadata_entries", ("key", "value"), "metadata_entry_id", meta),
    ):
        sql = (
            f"SELECT attempt_id, uuid, at, {key_a}, {key_b} FROM {table}"
            f" WHERE attempt_id IN ({attempt_ids_sql}) ORDER BY at, uuid"
        )
        for aid, uuid, at, a, b in tuples(db, sql, args):
            into.setdefault(aid, []).append({id_key: uuid, "when": iso_ms(at), key_a: a, key_b: b})
    return logs, meta


# The columns of a Sundial task, in the order ``task_object`` unpacks them.
TASK_COLUMNS = (
    "a.id, a.uuid, a.number, a.state, a.succeeded, a.exit_code, a.reason, a.created_at,"
    " a.started_at, a.ended_at, t.name, a.run_id"
)
NO_ENTRIES: list[dict[str, Any]] = []


def task_status(succeeded: int | None) -> str:
    if succeeded is None:
        return "running"
    return "succeeded" if succeeded else "failed"


def task_object(
    row: tuple[Any, ...],
    run_uuid: str,
    run_name: str,
    logs: dict[int, list[dict[str, Any]]],
    meta: dict[int, list[dict[str, Any]]],
) -> dict[str, Any]:
    """One attempt as Sundial's task object."""
    aid, uuid, number, state, succeeded, exit_code, reason, created, started, ended = row[:10]
    task_name = row[10]
    return {
        "task_id": uuid,
        "process_id": run_uuid,
        "process_definition_name": run_name,
        "task_definition_name": task_name,
        "start_time": iso_ms(started or created),
        "end_time": iso_ms(ended),
        "previous_attempt_count": number - 1,
        "log_entries": logs.get(aid, NO_ENTRIES),
        "metadata_entries": meta.get(aid, NO_ENTRIES),
        "exit_code": exit_code,
        "status": task_status(succeeded),
        "attempt_state": state,
        "reason": reason,
    }


def search_attempts(
    db: sqlite3.Connection,
    *,
    run_name: str | None,
    task_name: str | None,
    states: list[str] | None,
    start: int | None,
    end: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Sundial task objects of process runs, most recent first. ``states`` are Sundial task
    statuses."""
    # "+r.kind": not an index term, so SQLite walks attempts newest first and stops at
    # the limit instead of sorting every attempt of every process.
    sql = [
        f"SELECT {TASK_COLUMNS}, r.uuid, r.name FROM attempts a JOIN tasks t ON t.id = a.task_id"
        " JOIN runs r ON r.id = a.run_id WHERE +r.kind = 'process'"
    ]
    args: list[Any] = []
    if run_name is not None:
        sql.append("AND r.name = ?")
        args.append(run_name)
    if task_name is not None:
        sql.append("AND t.name = ?")
        args.append(task_name)
    if states:
        ors = []
        if "running" in states:
            ors.append("a.succeeded IS NULL")
        if "succeeded" in states:
            ors.append("a.succeeded = 1")
        if "failed" in states:
            ors.append("a.succeeded = 0")
        sql.append(f"AND ({' OR '.join(ors) or '0'})")
    if start is not None:
        sql.append("AND a.created_at >= ?")
        args.append(start)
    if end is not None:
        sql.append("AND a.created_at <= ?")
        args.append(end)
    sql.append("ORDER BY a.created_at DESC, a.id DESC LIMIT ?")
    args.append(limit)
    rows = tuples(db, " ".join(sql), args)
    ids = [row[0] for row in rows]
    logs, meta = entries(db, "SELECT value FROM json_each(?)", [orjson.dumps(ids).decode()])
    return [task_object(row, row[12], row[13], logs, meta) for row in rows]


def attempt_id(db: sqlite3.Connection, attempt_uuid: str) -> int:
    row = db.execute("SELECT id FROM attempts WHERE uuid = ?", (attempt_uuid,)).fetchone()
    if row is None:
        raise NotFound(f"no task with id {attempt_uuid}")
    return row["id"]


def add_entries(
    db: sqlite3.Connection, kind: str, attempt_uuid: str, entries: list[tuple[str, int, str, str]]
) -> None:
    """Append log entries (uuid, at, source, message) or metadata (uuid, at, key, value) of an
    attempt; an id already stored is accepted once (clients may resend)."""
    table, a, b = ENTRY_TABLES[kind]
    aid = attempt_id(db, attempt_uuid)
    m = MASKER.mask_text  # a job must not leak a secret's value into what everyone can read
    db.executemany(
        f"INSERT OR IGNORE INTO {table} (uuid, attempt_id, at, {a}, {b}) VALUES (?, ?, ?, ?, ?)",
        [(u, aid, at, m(x), m(y)) for u, at, x, y in entries],
    )


def counts(db: sqlite3.Connection) -> dict[str, Any]:
    """Runs by (kind, state) and the tasks that can still change, by state (metrics)."""
    runs = {
        (r["kind"], r["state"]): r["n"]
        for r in db.execute("SELECT kind, state, COUNT(*) AS n FROM runs GROUP BY kind, state")
    }
    tasks = {
        r["state"]: r["n"]
        for r in db.execute(
            "SELECT state, COUNT(*) AS n FROM tasks"
            " WHERE state IN ('waiting', 'ready', 'running', 'retry_wait') GROUP BY state"
        )
    }
    return {"runs": runs, "tasks": tasks}
