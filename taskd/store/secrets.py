"""Encrypted secrets: the rows only; encryption happens before they get here."""

from __future__ import annotations

import sqlite3


def put(db: sqlite3.Connection, name: str, nonce: bytes, value: bytes, at: int) -> bool:
    """Store a secret; True when it is new."""
    new = db.execute("SELECT 1 FROM secrets WHERE name = ?", (name,)).fetchone() is None
    db.execute(
        "INSERT INTO secrets (name, nonce, value, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET nonce = excluded.nonce, value = excluded.value,"
        " updated_at = excluded.updated_at",
        (name, nonce, value, at, at),
    )
    return new


def delete(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("DELETE FROM secrets WHERE name = ?", (name,)).rowcount > 0


def all_rows(db: sqlite3.Connection) -> list[sqlite3.Row]:
    return db.execute("SELECT * FROM secrets ORDER BY name").fetchall()
