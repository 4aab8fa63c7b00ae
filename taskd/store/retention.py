"""Retention queries: finding what has aged out (reads) and deleting it in small batches (writes).

Finding is done on a reader connection, so a pass over a long history never holds the write
lock; each delete is one short transaction of at most a batch of runs.
"""

from __future__ import annotations

import sqlite3

from taskd.models import RUN_TERMINAL

OUTPUT_WATERMARK = "retention.output_until"  # meta key: output of runs ended before is gone
_TERMINAL = ",".join(f"'{s}'" for s in sorted(str(s) for s in RUN_TERMINAL))


def output_watermark(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (OUTPUT_WATERMARK,)).fetchone()
    return int(row["value"]) if row else 0


def ended_between(
    db: sqlite3.Connection, since: int, after_id: int, before: int, limit: int
) -> list[tuple[int, int]]:
    """(id, ended_at) of runs that ended from (since, after_id) on and before ``before``,
    oldest first (the runs_ended index)."""
    return [
        (r["id"], r["ended_at"])
        for r in db.execute(
            "SELECT id, ended_at FROM runs WHERE (ended_at, id) > (?, ?) AND ended_at < ?"
            " ORDER BY ended_at, id LIMIT ?",
            (since, after_id, before, limit),
        )
    ]


def drop_output(db: sqlite3.Connection, run_ids: list[int], watermark: int | None) -> int:
    """Delete the captured output of ``run_ids``; move the age watermark when given."""
    marks = ",".join("?" * len(run_ids))
    cur = db.execute(
        f"DELETE FROM output_chunks WHERE attempt_id IN"
        f" (SELECT id FROM attempts WHERE run_id IN ({marks}))",
        run_ids,
    )
    if watermark is not None:
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (OUTPUT_WATERMARK, str(watermark)),
        )
    return cur.rowcount


def crowded_names(db: sqlite3.Connection, keep: int) -> list[tuple[str, str]]:
    """(kind, name) of definitions with more than ``keep`` finished runs."""
    return [
        (r["kind"], r["name"])
        for r in db.execute(
            "SELECT kind, name FROM runs WHERE ended_at IS NOT NULL"
            " GROUP BY kind, name HAVING COUNT(*) > ?",
            (keep,),
        )
    ]


def beyond_newest(
    db: sqlite3.Connection, kind: str, name: str, keep: int, after_id: int, limit: int
) -> list[int]:
    """Finished runs of one name older than its newest ``keep`` finished ones (ids > after_id)."""
    row = db.execute(
        "SELECT id FROM runs WHERE kind = ? AND name = ? AND ended_at IS NOT NULL"
        " ORDER BY id DESC LIMIT 1 OFFSET ?",
        (kind, name, keep - 1),
    ).fetchone()
    if row is None:
        return []
    return [
        r["id"]
        for r in db.execute(
            "SELECT id FROM runs WHERE kind = ? AND name = ? AND ended_at IS NOT NULL"
            " AND id > ? AND id < ? ORDER BY id LIMIT ?",
            (kind, name, after_id, row["id"], limit),
        )
    ]


def aged_runs(db: sqlite3.Connection, before: int, limit: int) -> list[int]:
    """Finished runs that ended before ``before``, oldest first, never the newest of a name
    (a continuous schedule counts from its newest run)."""
    return [
        r["id"]
        for r in db.execute(
            "SELECT id FROM runs WHERE ended_at < ? AND EXISTS (SELECT 1 FROM runs newer"
            " WHERE newer.kind = runs.kind AND newer.name = runs.name"
            " AND newer.created_at > runs.created_at) ORDER BY ended_at LIMIT ?",
            (before, limit),
        )
    ]


def drop_runs(db: sqlite3.Connection, run_ids: list[int]) -> int:
    """Delete finished runs with everything hanging off them; returns runs deleted.

    The scheduler's ledger rows of those runs go too, except each definition's newest slot:
    the scheduler resumes after its newest slot, so that row is what stops an old slot from
    firing again.
    """
    if not run_ids:
        return 0
    marks = ",".join("?" * len(run_ids))
    gone = [
        r["id"]
        for r in db.execute(
            f"SELECT id FROM runs WHERE id IN ({marks}) AND ended_at IS NOT NULL"
            f" AND state IN ({_TERMINAL})",
            run_ids,
        )
    ]
    if not gone:
        return 0
    marks = ",".join("?" * len(gone))
    db.execute(
        f"DELETE FROM ledger WHERE run_id IN ({marks}) AND slot < (SELECT MAX(slot)"
        f" FROM ledger newest WHERE newest.definition = ledger.definition)",
        gone,
    )
    db.execute(f"DELETE FROM triggers WHERE run_id IN ({marks})", gone)
    cur = db.execute(f"DELETE FROM runs WHERE id IN ({marks})", gone)
    return cur.rowcount


def ledger_definitions(db: sqlite3.Connection) -> list[str]:
    return [r[0] for r in db.execute("SELECT DISTINCT definition FROM ledger")]


def drop_missed(db: sqlite3.Connection, definitions: list[str], before: int) -> int:
    """Missed slots older than ``before``, but never a definition's newest slot."""
    deleted = 0
    for definition in definitions:
        cur = db.execute(
            "DELETE FROM ledger WHERE definition = ? AND status = 'missed' AND slot < ?"
            " AND slot < (SELECT MAX(slot) FROM ledger WHERE definition = ?)",
            (definition, before, definition),
        )
        deleted += cur.rowcount
    return deleted
