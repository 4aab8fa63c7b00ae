"""Read views of process runs and their attempts, and the task callbacks' writes.

Every list is read with a fixed number of queries whatever its length (no N+1).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from taskd.errors import NotFound
from taskd.secrets import MASKER
from taskd.store.output import ENTRY_TABLES

ATTEMPT_COLUMNS = (
    "a.id, a.uuid, a.number, a.state, a.succeeded, a.exit_code, a.reason, a.runner,"
    " a.container_id, a.created_at, a.started_at, a.ended_at, a.reported, t.name AS task_name,"
    " t.template, r.uuid AS run_uuid, r.id AS run_id, r.name AS run_name"
)


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


def attempts_of_runs(db: sqlite3.Connection, run_ids: list[int]) -> list[dict[str, Any]]:
    if not run_ids:
        return []
    rows = db.execute(
        f"SELECT {ATTEMPT_COLUMNS} FROM attempts a JOIN tasks t ON t.id = a.task_id"
        f" JOIN runs r ON r.id = a.run_id WHERE a.run_id IN ({marks(run_ids)})"
        " ORDER BY a.run_id, a.id",
        run_ids,
    ).fetchall()
    return with_entries(db, rows)


def with_entries(db: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    """Attempt rows as dicts with their log and metadata entries (two queries in all)."""
    attempts = [dict(r) for r in rows]
    ids = [a["id"] for a in attempts]
    logs: dict[int, list[dict[str, Any]]] = defaultdict(list)
    meta: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for chunk in range(0, len(ids), 500):
        part = ids[chunk : chunk + 500]
        for r in db.execute(
            f"SELECT * FROM log_entries WHERE attempt_id IN ({marks(part)}) ORDER BY at, uuid",
            part,
        ):
            logs[r["attempt_id"]].append(dict(r))
        for r in db.execute(
            f"SELECT * FROM metadata_entries WHERE attempt_id IN ({marks(part)}) ORDER BY at, uuid",
            part,
        ):
            meta[r["attempt_id"]].append(dict(r))
    for a in attempts:
        a["log_entries"] = logs.get(a["id"], [])
        a["metadata_entries"] = meta.get(a["id"], [])
    return attempts


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
    """Attempts of process runs, most recent first. ``states`` are Sundial task statuses."""
    sql = [
        f"SELECT {ATTEMPT_COLUMNS} FROM attempts a JOIN tasks t ON t.id = a.task_id"
        # "+r.kind": not an index term, so SQLite walks attempts newest first and stops at
        # the limit instead of sorting every attempt of every process.
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
    return with_entries(db, db.execute(" ".join(sql), args).fetchall())


def attempt(db: sqlite3.Connection, attempt_uuid: str) -> dict[str, Any]:
    row = db.execute(
        f"SELECT {ATTEMPT_COLUMNS} FROM attempts a JOIN tasks t ON t.id = a.task_id"
        " JOIN runs r ON r.id = a.run_id WHERE a.uuid = ?",
        (attempt_uuid,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no task with id {attempt_uuid}")
    return dict(row)


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
