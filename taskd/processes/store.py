"""Process definitions, their versions, manual triggers and the scheduler's ledger."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import orjson

from taskd.errors import Conflict, NotFound


@dataclass(frozen=True, slots=True)
class Definition:
    name: str
    version: int
    doc: dict[str, Any]
    paused: bool
    created_at: int
    updated_at: int

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Definition:
        return cls(row["name"], row["version"], orjson.loads(row["doc"]), bool(row["paused"]),
                   row["created_at"], row["updated_at"])  # fmt: skip


def put(db: sqlite3.Connection, name: str, doc: dict[str, Any], at: int) -> Definition:
    """Create or replace; every change bumps the version (kept in definition_versions)."""
    row = db.execute(
        "SELECT COALESCE(MAX(version), 0) AS v FROM definition_versions WHERE name = ?", (name,)
    ).fetchone()
    version = row["v"] + 1
    text = orjson.dumps(doc).decode()
    db.execute(
        "INSERT INTO definitions (name, version, doc, paused, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET version = excluded.version,"
        " doc = excluded.doc, paused = excluded.paused, updated_at = excluded.updated_at",
        (name, version, text, int(doc["paused"]), at, at),
    )
    db.execute(
        "INSERT INTO definition_versions (name, version, doc, created_at) VALUES (?, ?, ?, ?)",
        (name, version, text, at),
    )
    return get(db, name)


def get(db: sqlite3.Connection, name: str) -> Definition:
    row = db.execute("SELECT * FROM definitions WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no process definition named {name!r}")
    return Definition.from_row(row)


def all_definitions(db: sqlite3.Connection) -> list[Definition]:
    return [Definition.from_row(r) for r in db.execute("SELECT * FROM definitions ORDER BY name")]


def version(db: sqlite3.Connection, name: str, number: int) -> dict[str, Any]:
    row = db.execute(
        "SELECT doc FROM definition_versions WHERE name = ? AND version = ?", (name, number)
    ).fetchone()
    if row is None:
        raise NotFound(f"no version {number} of process definition {name!r}")
    return orjson.loads(row["doc"])


def delete(db: sqlite3.Connection, name: str) -> None:
    """Forget the definition; its runs and versions stay as history."""
    cur = db.execute("DELETE FROM definitions WHERE name = ?", (name,))
    if cur.rowcount == 0:
        raise NotFound(f"no process definition named {name!r}")
    db.execute("DELETE FROM triggers WHERE definition = ? AND run_id IS NULL", (name,))
    db.execute("DELETE FROM ledger WHERE definition = ? AND status = 'waiting'", (name,))


def set_paused(db: sqlite3.Connection, name: str, paused: bool, at: int) -> Definition:
    row = db.execute("SELECT doc FROM definitions WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no process definition named {name!r}")
    doc = orjson.loads(row["doc"])
    doc["paused"] = paused
    db.execute(
        "UPDATE definitions SET paused = ?, doc = ?, updated_at = ? WHERE name = ?",
        (int(paused), orjson.dumps(doc).decode(), at, name),
    )
    return get(db, name)


# -- manual triggers ----------------------------------------------------------------------


def add_trigger(db: sqlite3.Connection, name: str, task_filter: str | None, at: int) -> int:
    get(db, name)  # 404 for an unknown definition
    cur = db.execute(
        "INSERT INTO triggers (definition, task_filter, created_at) VALUES (?, ?, ?)",
        (name, task_filter, at),
    )
    return cur.lastrowid or 0


def open_triggers(db: sqlite3.Connection, name: str | None = None) -> list[sqlite3.Row]:
    if name is None:
        return db.execute("SELECT * FROM triggers WHERE run_id IS NULL ORDER BY id").fetchall()
    return db.execute(
        "SELECT * FROM triggers WHERE run_id IS NULL AND definition = ? ORDER BY id", (name,)
    ).fetchall()


def consume_trigger(db: sqlite3.Connection, trigger_id: int, run_id: int) -> None:
    cur = db.execute(
        "UPDATE triggers SET run_id = ? WHERE id = ? AND run_id IS NULL", (run_id, trigger_id)
    )
    if cur.rowcount == 0:
        raise Conflict(f"trigger {trigger_id} was already used")


# -- the ledger ---------------------------------------------------------------------------


def last_slots(db: sqlite3.Connection, name: str | None = None) -> dict[str, int]:
    """The newest slot recorded for every definition (or only ``name``)."""
    where, args = ("WHERE definition = ?", (name,)) if name is not None else ("", ())
    return {
        r["definition"]: r["slot"]
        for r in db.execute(
            f"SELECT definition, MAX(slot) AS slot FROM ledger {where} GROUP BY definition", args
        )
    }


def last_starts(db: sqlite3.Connection, name: str | None = None) -> dict[str, int]:
    """When each definition's newest process was created (continuous schedules count from it)."""
    where, args = ("AND name = ?", (name,)) if name is not None else ("", ())
    return {
        r["name"]: r["at"]
        for r in db.execute(
            "SELECT name, MAX(created_at) AS at FROM runs"
            f" WHERE kind = 'process' {where} GROUP BY name",
            args,
        )
    }


def waiting_slots(db: sqlite3.Connection) -> list[sqlite3.Row]:
    return db.execute(
        "SELECT definition, slot FROM ledger WHERE status = 'waiting' ORDER BY slot"
    ).fetchall()


def record_slots(db: sqlite3.Connection, name: str, slots: list[tuple[int, str]], at: int) -> None:
    """Record slots as missed or waiting; a slot already recorded keeps its first record."""
    db.executemany(
        "INSERT OR IGNORE INTO ledger (definition, slot, status, recorded_at) VALUES (?, ?, ?, ?)",
        [(name, slot, status, at) for slot, status in slots],
    )


def fire_slot(db: sqlite3.Connection, name: str, slot: int, run_id: int, at: int) -> None:
    """Mark a slot fired by a run, in the transaction that creates the run.

    A slot that was already fired (or missed) makes the whole transaction fail, so no slot
    ever starts two runs.
    """
    cur = db.execute(
        "UPDATE ledger SET status = 'fired', run_id = ?, recorded_at = ?"
        " WHERE definition = ? AND slot = ? AND status = 'waiting'",
        (run_id, at, name, slot),
    )
    if cur.rowcount == 0:
        db.execute(
            "INSERT INTO ledger (definition, slot, status, run_id, recorded_at)"
            " VALUES (?, ?, 'fired', ?, ?)",
            (name, slot, run_id, at),
        )


def collapse_waiting(db: sqlite3.Connection, name: str, keep: int) -> None:
    """Older waiting slots become missed: only the newest waits (Sundial collapses them)."""
    db.execute(
        "UPDATE ledger SET status = 'missed' WHERE definition = ? AND status = 'waiting'"
        " AND slot < ?",
        (name, keep),
    )


def ledger_rows(db: sqlite3.Connection, name: str, limit: int = 100) -> list[sqlite3.Row]:
    return db.execute(
        "SELECT * FROM ledger WHERE definition = ? ORDER BY slot DESC LIMIT ?", (name, limit)
    ).fetchall()
