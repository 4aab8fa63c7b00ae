"""Read views and writes of container tasks (Drove): one run of kind ``task`` with one task.

A task is found by its run name ``"<sourceAppName>/<taskId>"``; both parts are restricted to
``[a-zA-Z0-9_-]`` by the API, so the slash is unambiguous and GLOB patterns built from them
need no escaping. Every view joins the run, its task and the task's latest attempt in one
query, so a list costs one query whatever its length.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from taskd.errors import Conflict, NotFound
from taskd.models import RUN_ACTIVE, RunKind
from taskd.store import output as oq

KIND = str(RunKind.TASK)

VIEW = (
    "SELECT r.id, r.uuid, r.name, r.state AS run_state, r.kill_requested, r.extra,"
    " r.created_at, r.updated_at, t.state AS task_state, a.id AS attempt_id,"
    " a.state AS attempt_state, a.succeeded, a.exit_code, a.reason, a.cpuset, a.host,"
    " a.created_at AS attempt_created, a.started_at AS attempt_started,"
    " a.ended_at AS attempt_ended"
    " FROM runs r JOIN tasks t ON t.run_id = r.id"
    " LEFT JOIN attempts a ON a.id = (SELECT MAX(id) FROM attempts WHERE task_id = t.id)"
    " WHERE r.kind = ?"
)


def run_name(app: str, task_id: str) -> str:
    """The run name a task is stored under."""
    return f"{app}/{task_id}"


def claim(db: sqlite3.Connection, run_id: int, name: str) -> None:
    """Refuse a second run of the same (app, task id), finished ones included.

    Runs inside the transaction that inserts the new run (``engine.submit(also=...)``), so two
    concurrent creates cannot both pass: the second one sees the first one's row.
    """
    row = db.execute(
        "SELECT id FROM runs WHERE kind = ? AND name = ? AND id != ? LIMIT 1",
        (KIND, name, run_id),
    ).fetchone()
    if row is not None:
        raise Conflict(f"task {name} already exists")


def find(db: sqlite3.Connection, app: str, task_id: str) -> sqlite3.Row | None:
    """The task's view row, or None."""
    return db.execute(f"{VIEW} AND r.name = ?", (KIND, run_name(app, task_id))).fetchone()


def active(db: sqlite3.Connection) -> list[sqlite3.Row]:
    """Tasks whose run is still queued or running, oldest first."""
    states = tuple(str(s) for s in RUN_ACTIVE)
    return db.execute(
        f"{VIEW} AND r.state IN ({','.join('?' * len(states))}) ORDER BY r.created_at, r.id",
        (KIND, *states),
    ).fetchall()


def search(
    db: sqlite3.Connection,
    *,
    app: str | None = None,
    task_id: str | None = None,
    prefix: str | None = None,
    start: int | None = None,
    end: int | None = None,
    keep: Callable[[sqlite3.Row], bool] | None = None,
    limit: int = 100,
) -> list[sqlite3.Row]:
    """Tasks newest first, filtered by app, exact task id or id prefix and creation time.

    ``start`` is inclusive, ``end`` exclusive (ns). ``keep`` filters rows further (the Drove
    state, which is derived from several columns); rows are read lazily until ``limit`` kept.
    """
    sql = [VIEW]
    args: list[Any] = [KIND]
    if app is not None and task_id is not None:
        sql.append("AND r.name = ?")
        args.append(run_name(app, task_id))
    elif app is not None:
        # GLOB is case-sensitive, like the ids; the id alphabet holds no GLOB wildcards.
        sql.append("AND r.name GLOB ?")
        args.append(run_name(app, f"{prefix or ''}*"))
    elif task_id is not None:
        sql.append("AND r.name GLOB ?")
        args.append(f"*/{task_id}")
    elif prefix:
        sql.append("AND r.name GLOB ?")
        args.append(f"*/{prefix}*")
    if start is not None:
        sql.append("AND r.created_at >= ?")
        args.append(start)
    if end is not None:
        sql.append("AND r.created_at < ?")
        args.append(end)
    sql.append("ORDER BY r.created_at DESC, r.id DESC")
    cur = db.execute(" ".join(sql), args)
    found: list[sqlite3.Row] = []
    while len(found) < limit:
        rows = cur.fetchmany(200)
        if not rows:
            break
        found.extend(r for r in rows if keep is None or keep(r))
    return found[:limit]


def delete_finished(db: sqlite3.Connection, app: str, task_id: str) -> None:
    """Delete a finished task's run and everything under it (cascades to output)."""
    name = run_name(app, task_id)
    row = db.execute(
        "SELECT id, state FROM runs WHERE kind = ? AND name = ?", (KIND, name)
    ).fetchone()
    if row is None:
        raise NotFound("no such task instance")
    if row["state"] in RUN_ACTIVE:
        raise Conflict("the task is still active; kill it first")
    db.execute("DELETE FROM runs WHERE id = ?", (row["id"],))


# -- captured output, as byte ranges of one stream --------------------------------------------


def stream_end(db: sqlite3.Connection, attempt_id: int, stream: str) -> int:
    """How many bytes of a stream the attempt has written so far (stored or dropped)."""
    row = db.execute(
        "SELECT MAX(offset + length(data)) FROM output_chunks WHERE attempt_id = ? AND stream = ?",
        (attempt_id, stream),
    ).fetchone()
    return row[0] or 0


def stream_from(
    db: sqlite3.Connection, attempt_id: int, stream: str, start: int, length: int
) -> list[oq.Chunk]:
    """Stored chunks of a stream from byte ``start`` on, in stream order.

    Read lazily until they hold ``length`` bytes past ``start``; gaps where output was
    dropped are skipped, not counted.
    """
    cur = db.execute(
        "SELECT id, offset, head, data FROM output_chunks WHERE attempt_id = ? AND stream = ?"
        " AND offset + length(data) > ? ORDER BY offset",
        (attempt_id, stream, start),
    )
    found: list[oq.Chunk] = []
    held = 0
    while held < length:
        row = cur.fetchone()
        if row is None:
            break
        chunk = oq.Chunk(row["id"], stream, row["offset"], bool(row["head"]), row["data"])
        found.append(chunk)
        held += len(chunk.data) - max(0, start - chunk.offset)
    return found


def stream_bytes(db: sqlite3.Connection, attempt_id: int, stream: str) -> bytes:
    """A whole stream as stored, with a marker where output was dropped."""
    return oq.assemble(oq.chunks(db, attempt_id, (stream,)))
