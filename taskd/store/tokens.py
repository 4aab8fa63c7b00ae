"""API tokens (viewer/admin) and task-token lookups."""

from __future__ import annotations

import sqlite3

from taskd.models import ATTEMPT_ACTIVE


def role_of(db: sqlite3.Connection, hashed: str) -> str | None:
    row = db.execute("SELECT role FROM api_tokens WHERE hash = ?", (hashed,)).fetchone()
    return row["role"] if row else None


def insert_token(db: sqlite3.Connection, hashed: str, role: str, name: str, at: int) -> None:
    db.execute(
        "INSERT INTO api_tokens (hash, role, name, created_at) VALUES (?, ?, ?, ?)",
        (hashed, role, name, at),
    )


def attempt_token_hash(db: sqlite3.Connection, attempt_uuid: str) -> str | None:
    row = db.execute("SELECT token_hash FROM attempts WHERE uuid = ?", (attempt_uuid,)).fetchone()
    return row["token_hash"] if row else None


def attempt_token(db: sqlite3.Connection, attempt_uuid: str) -> tuple[str, bool] | None:
    """The attempt's token hash, and whether the attempt is still starting or running."""
    row = db.execute(
        "SELECT token_hash, state, ended_at FROM attempts WHERE uuid = ?", (attempt_uuid,)
    ).fetchone()
    if row is None:
        return None
    return row["token_hash"], row["state"] in ATTEMPT_ACTIVE and row["ended_at"] is None


def meta_get(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row["value"] if row else None


def meta_setdefault(db: sqlite3.Connection, key: str, value: str) -> str:
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))
    return db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()["value"]
