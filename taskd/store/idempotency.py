"""Idempotency keys: the first answer to a create, found again by (credential, key)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from taskd.errors import TaskdError


class KeyTaken(TaskdError):
    """Another request with the same key created first; its answer is the one to give."""

    status = 409
    code = "conflict"


@dataclass(frozen=True, slots=True)
class KeyRow:
    """What is kept of a key: its request's fingerprint and (once known) the answer."""

    fingerprint: str
    status: int | None
    content_type: str | None
    body: bytes | None


def lookup(db: sqlite3.Connection, scope: str, key: str, since: int) -> KeyRow | None:
    row = db.execute(
        "SELECT fingerprint, status, content_type, body FROM idempotency_keys"
        " WHERE scope = ? AND key = ? AND created_at >= ?",
        (scope, key, since),
    ).fetchone()
    if row is None:
        return None
    return KeyRow(row["fingerprint"], row["status"], row["content_type"], row["body"])


def claim(
    db: sqlite3.Connection,
    scope: str,
    key: str,
    fingerprint: str,
    at: int,
    since: int,
    answer: tuple[int, str, bytes] | None,
) -> None:
    """Record the key inside the transaction of what its request creates."""
    # A row past the window is forgotten: the key may be used afresh.
    db.execute(
        "DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND created_at < ?",
        (scope, key, since),
    )
    status, content_type, body = answer if answer is not None else (None, None, None)
    try:
        db.execute(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, status, content_type, body,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (scope, key, fingerprint, status, content_type, body, at),
        )
    except sqlite3.IntegrityError:
        raise KeyTaken("a request with this Idempotency-Key was handled first") from None


def answer(
    db: sqlite3.Connection, scope: str, key: str, status: int, content_type: str, body: bytes
) -> None:
    """Keep the answer the request was actually sent."""
    db.execute(
        "UPDATE idempotency_keys SET status = ?, content_type = ?, body = ?"
        " WHERE scope = ? AND key = ?",
        (status, content_type, body, scope, key),
    )


def kind_number(db: sqlite3.Connection, run_id: int) -> int:
    """A run's number among the runs of its kind (what Daggy calls a DAG run's id)."""
    return db.execute("SELECT kind_no FROM runs WHERE id = ?", (run_id,)).fetchone()["kind_no"]


def prune(db: sqlite3.Connection, before: int) -> int:
    """Forget keys older than the window; returns how many."""
    return db.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (before,)).rowcount
