"""SQL of the work queue: tasks, leases, verifications, worker logs and monitoring.

Plain functions ``fn(conn, ...)`` run by ``Store.write``/``Store.read``; the rules live in
``taskd.workqueue.service``, which calls these inside one transaction per request. Projects,
workers and access grants are in ``taskd.workqueue.store_projects``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from taskd.workqueue.model import NS

# Statuses appear as literals in the SQL below: 1 new, 2 failed, 3 closed (model.Status).

# (priority, max_retries, max_assign_time, verification_count, hash64, recipe)
TaskRow = tuple[int, int, int, int, int | None, str]

TASK_COLUMNS = (
    "id, project, status, priority, assignee, assign_time, lease_expires_at, retries, "
    "max_retries, max_assign_time, verification_count, hash64, recipe"
)


# -- submitting -------------------------------------------------------------------------------

INSERT_TASK = (
    "INSERT INTO queue_tasks (project, priority, max_retries, max_assign_time, "
    "verification_count, hash64, recipe, submitted_by, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def insert_tasks(
    db: sqlite3.Connection, project: int, rows: Sequence[TaskRow], worker: int, now: int
) -> int | None:
    """Insert every row or none; return None, or the index of the first duplicate hash."""
    if len(rows) == 1:
        # One statement is atomic by itself: no savepoint to undo the rows before a duplicate.
        try:
            db.execute(INSERT_TASK, (project, *rows[0], worker, now))
        except sqlite3.IntegrityError:
            if first_duplicate(db, project, [rows[0][4]]) is None:
                raise
            return 0
        return None
    db.execute("SAVEPOINT insert_tasks")
    try:
        db.executemany(INSERT_TASK, [(project, *row, worker, now) for row in rows])
    except sqlite3.IntegrityError:
        # The only constraint a validated row can break is the hash index: find which row.
        db.execute("ROLLBACK TO insert_tasks")
        db.execute("RELEASE insert_tasks")
        duplicate = first_duplicate(db, project, [row[4] for row in rows])
        if duplicate is None:
            raise
        return duplicate
    db.execute("RELEASE insert_tasks")
    return None


def first_duplicate(db: sqlite3.Connection, project: int, hashes: list[int | None]) -> int | None:
    """The index of the first of ``hashes`` already open in the project."""
    present: set[int] = set()
    wanted = [h for h in hashes if h is not None]
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ",".join("?" * len(chunk))
        present.update(
            row[0]
            for row in db.execute(
                f"SELECT hash64 FROM queue_tasks WHERE project = ? AND status <> 3 "
                f"AND hash64 IN ({marks})",
                (project, *chunk),
            )
        )
    return next((i for i, h in enumerate(hashes) if h in present), None)


# -- leasing ----------------------------------------------------------------------------------


def free_expired_leases(db: sqlite3.Connection, now: int) -> int:
    """Take back every lease that expired by ``now`` (an index range, normally empty)."""
    cur = db.execute(
        "UPDATE queue_tasks SET assignee = NULL, assign_time = NULL, lease_expires_at = NULL "
        "WHERE lease_expires_at <= ?",
        (now,),
    )
    return cur.rowcount


def next_lease_expiry(db: sqlite3.Connection) -> int | None:
    """When the earliest lease runs out (ns), or None when nothing is leased."""
    return db.execute(
        "SELECT MIN(lease_expires_at) FROM queue_tasks WHERE lease_expires_at IS NOT NULL"
    ).fetchone()[0]


def lease_next(
    db: sqlite3.Connection, project: int, worker: int, now: int, default_lease: int
) -> sqlite3.Row | None:
    """Lease the project's next free task to ``worker``: one UPDATE, so never twice at once.

    Higher priority first, then FIFO by id; a task this worker already verified is skipped.
    ``default_lease`` (ns) applies to tasks submitted with ``max_assign_time`` 0.
    """
    # fetchall: a RETURNING statement left half-read would stay open into the COMMIT.
    rows = db.execute(
        "UPDATE queue_tasks SET assignee = :worker, assign_time = :now, lease_expires_at = "
        f"  :now + CASE WHEN max_assign_time > 0 THEN max_assign_time * {NS} "
        "  ELSE :default_lease END "
        "WHERE id = (SELECT t.id FROM queue_tasks t "
        "  WHERE t.project = :project AND t.status = 1 AND t.assignee IS NULL "
        "  AND (t.verification_count <= 1 OR NOT EXISTS (SELECT 1 FROM queue_verifications v "
        "       WHERE v.task = t.id AND v.worker = :worker)) "
        "  ORDER BY t.priority DESC, t.id LIMIT 1) "
        f"RETURNING {TASK_COLUMNS}",
        {"worker": worker, "now": now, "project": project, "default_lease": default_lease},
    ).fetchall()
    return rows[0] if rows else None


def task_by_id(db: sqlite3.Connection, task: int) -> sqlite3.Row | None:
    """One task, any status; None if there is no such task."""
    return db.execute(f"SELECT {TASK_COLUMNS} FROM queue_tasks WHERE id = ?", (task,)).fetchone()


def tasks_by_ids(db: sqlite3.Connection, ids: Sequence[int]) -> dict[int, sqlite3.Row]:
    """The tasks of ``ids`` that exist, by id (at most a batch's worth: one query)."""
    marks = ",".join("?" * len(ids))
    rows = db.execute(f"SELECT {TASK_COLUMNS} FROM queue_tasks WHERE id IN ({marks})", ids)
    return {row["id"]: row for row in rows}


# -- releasing --------------------------------------------------------------------------------


def unassign(db: sqlite3.Connection, task: int, *, retries: int, status: int) -> None:
    """End the lease on a task, setting its retries and status."""
    db.execute(
        "UPDATE queue_tasks SET assignee = NULL, lease_expires_at = NULL, retries = ?, "
        "status = ? WHERE id = ?",
        (retries, status, task),
    )


def record_verification(
    db: sqlite3.Connection, task: int, worker: int, value: int, now: int
) -> int:
    """Record one worker's verification; return how many workers sent this same value."""
    db.execute(
        "INSERT OR REPLACE INTO queue_verifications (task, worker, verification, created_at) "
        "VALUES (?, ?, ?, ?)",
        (task, worker, value, now),
    )
    return db.execute(
        "SELECT COUNT(*) FROM queue_verifications WHERE task = ? AND verification = ?",
        (task, value),
    ).fetchone()[0]


def close_task(db: sqlite3.Connection, task: sqlite3.Row, worker: int, now: int) -> None:
    """Close a task once, count it for its project and worker, and copy it down the chain."""
    db.execute(
        "UPDATE queue_tasks SET status = 3, assignee = NULL, lease_expires_at = NULL, "
        "closed_at = ?, closed_by = ? WHERE id = ?",
        (now, worker, task["id"]),
    )
    chain = db.execute(
        "UPDATE queue_projects SET closed_task_count = closed_task_count + 1 WHERE id = ? "
        "RETURNING chain",
        (task["project"],),
    ).fetchall()[0][0]
    db.execute(
        "UPDATE queue_workers SET closed_task_count = closed_task_count + 1 WHERE id = ?",
        (worker,),
    )
    if task["verification_count"] > 1:
        db.execute("DELETE FROM queue_verifications WHERE task = ?", (task["id"],))
    if chain is not None:
        # The hash index applies in the chained project too: a duplicate is not copied.
        db.execute(
            "INSERT INTO queue_tasks (project, priority, max_retries, max_assign_time, "
            "verification_count, hash64, recipe, created_at) "
            "SELECT ?, priority, max_retries, max_assign_time, verification_count, hash64, "
            "recipe, ? FROM queue_tasks WHERE id = ? ON CONFLICT DO NOTHING",
            (chain, now, task["id"]),
        )


# -- maintenance ------------------------------------------------------------------------------


def reset_failed(db: sqlite3.Connection, project: int) -> int:
    """FAILED tasks of the project become NEW again, retries 0; returns how many."""
    return db.execute(
        "UPDATE queue_tasks SET status = 1, retries = 0, assignee = NULL, assign_time = NULL, "
        "lease_expires_at = NULL WHERE project = ? AND status = 2",
        (project,),
    ).rowcount


def reclaim_assigned(db: sqlite3.Connection, project: int) -> int:
    """End every lease in the project (no retry counted); returns how many."""
    return db.execute(
        "UPDATE queue_tasks SET assignee = NULL, assign_time = NULL, lease_expires_at = NULL "
        "WHERE project = ? AND status = 1 AND assignee IS NOT NULL",
        (project,),
    ).rowcount


def hard_reset(db: sqlite3.Connection, project: int) -> int:
    """Delete every task of the project (closed ones too); counters are kept."""
    return db.execute("DELETE FROM queue_tasks WHERE project = ?", (project,)).rowcount


def assignees(db: sqlite3.Connection, project: int, now: int) -> list[sqlite3.Row]:
    """Live leases of the project per worker, most first."""
    return db.execute(
        "SELECT t.assignee AS worker, w.alias, COUNT(*) AS task_count FROM queue_tasks t "
        "JOIN queue_workers w ON w.id = t.assignee "
        "WHERE t.project = ? AND t.status = 1 AND t.assignee IS NOT NULL "
        "AND t.lease_expires_at > ? GROUP BY t.assignee ORDER BY task_count DESC, t.assignee",
        (project, now),
    ).fetchall()


# -- monitoring -------------------------------------------------------------------------------

# new = open tasks nobody has verified yet; awaiting = open tasks with at least one
# verification recorded (waiting for more workers to agree).
COUNTS = """
    SELECT p.id AS project,
      (SELECT COUNT(*) FROM queue_tasks t WHERE t.project = p.id AND t.status = 1)
        - (SELECT COUNT(DISTINCT v.task) FROM queue_verifications v
             JOIN queue_tasks t ON t.id = v.task WHERE t.project = p.id AND t.status = 1)
        AS new_task_count,
      (SELECT COUNT(*) FROM queue_tasks t WHERE t.project = p.id AND t.status = 2)
        AS failed_task_count,
      p.closed_task_count,
      (SELECT COUNT(*) FROM queue_access a WHERE a.project = p.id AND a.request = 0)
        AS worker_access_count,
      (SELECT COUNT(DISTINCT v.task) FROM queue_verifications v
         JOIN queue_tasks t ON t.id = v.task WHERE t.project = p.id AND t.status = 1)
        AS awaiting_verification_count
    FROM queue_projects p
"""

SNAPSHOT_COLUMNS = (
    "new_task_count, failed_task_count, closed_task_count, worker_access_count, "
    "awaiting_verification_count"
)


def current_counts(db: sqlite3.Connection, project: int) -> sqlite3.Row | None:
    """The monitoring counts of one project now; None for an unknown project."""
    return db.execute(COUNTS + " WHERE p.id = ?", (project,)).fetchone()


def take_snapshots(db: sqlite3.Connection, at: int, keep_after: int) -> int:
    """Snapshot the counts of every project at ``at`` (seconds); drop those before
    ``keep_after``."""
    cur = db.execute(
        f"INSERT OR REPLACE INTO queue_snapshots (project, taken_at, {SNAPSHOT_COLUMNS}) "
        f"SELECT project, ?, {SNAPSHOT_COLUMNS} FROM ({COUNTS})",
        (at,),
    )
    db.execute("DELETE FROM queue_snapshots WHERE taken_at < ?", (keep_after,))
    return cur.rowcount


def snapshots(
    db: sqlite3.Connection, project: int, since: int, until: int, limit: int
) -> list[sqlite3.Row]:
    """Stored snapshots of a project taken in [since, until] (seconds), newest first."""
    return db.execute(
        f"SELECT taken_at, {SNAPSHOT_COLUMNS} FROM queue_snapshots WHERE project = ? "
        "AND taken_at BETWEEN ? AND ? ORDER BY taken_at DESC LIMIT ?",
        (project, since, until, limit),
    ).fetchall()


# -- worker logs ------------------------------------------------------------------------------


def insert_log(
    db: sqlite3.Connection, level: int, message: str, timestamp: int, data: str, now: int
) -> None:
    """Store one worker log entry."""
    db.execute(
        "INSERT INTO queue_log_entries (level, message, timestamp, data, received_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (level, message, timestamp, data, now),
    )


def logs(db: sqlite3.Connection, level: int, since: int, limit: int) -> list[sqlite3.Row]:
    """Entries of exactly ``level`` with a timestamp after ``since``, oldest first."""
    return db.execute(
        "SELECT message, timestamp, data, level FROM queue_log_entries "
        "WHERE level = ? AND timestamp > ? ORDER BY timestamp, id LIMIT ?",
        (level, since, limit),
    ).fetchall()


def prune_logs(db: sqlite3.Connection, before: int) -> int:
    """Delete worker log entries received before ``before`` (ns)."""
    return db.execute("DELETE FROM queue_log_entries WHERE received_at < ?", (before,)).rowcount
