"""Captured output of attempts: chunks with their byte offsets, head kept, tail rolling."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Chunk:
    id: int
    stream: str
    offset: int
    head: bool
    data: bytes


def append(
    db: sqlite3.Connection,
    attempt_id: int,
    rows: list[tuple[str, int, bool, bytes]],
    drop: list[int],
) -> list[int]:
    """Insert chunks (stream, offset, head, data) and delete tail chunks that rolled out."""
    ids = []
    for stream, offset, head, data in rows:
        cur = db.execute(
            "INSERT INTO output_chunks (attempt_id, stream, offset, head, data)"
            " VALUES (?, ?, ?, ?, ?)",
            (attempt_id, stream, offset, int(head), data),
        )
        ids.append(cur.lastrowid)
    if drop:
        db.executemany("DELETE FROM output_chunks WHERE id = ?", [(i,) for i in drop])
    return ids


def positions(
    db: sqlite3.Connection, attempt_id: int
) -> tuple[dict[str, int], list[tuple[int, str, int]]]:
    """Bytes seen so far per stream, and the (id, stream, size) of the rolling tail chunks."""
    seen = {
        r["stream"]: r["end"]
        for r in db.execute(
            "SELECT stream, MAX(offset + length(data)) AS end FROM output_chunks"
            " WHERE attempt_id = ? GROUP BY stream",
            (attempt_id,),
        )
    }
    tail = [
        (r["id"], r["stream"], r["n"])
        for r in db.execute(
            "SELECT id, stream, length(data) AS n FROM output_chunks"
            " WHERE attempt_id = ? AND head = 0 ORDER BY id",
            (attempt_id,),
        )
    ]
    return seen, tail


def chunks(
    db: sqlite3.Connection,
    attempt_id: int,
    streams: tuple[str, ...],
    after_id: int = 0,
) -> list[Chunk]:
    marks = ",".join("?" * len(streams))
    return [
        Chunk(r["id"], r["stream"], r["offset"], bool(r["head"]), r["data"])
        for r in db.execute(
            f"SELECT id, stream, offset, head, data FROM output_chunks"
            f" WHERE attempt_id = ? AND id > ? AND stream IN ({marks}) ORDER BY id",
            (attempt_id, after_id, *streams),
        )
    ]


def text_of(db: sqlite3.Connection, attempt_ids: list[int], stream: str) -> dict[int, str]:
    """Whole captured text of one stream for many attempts (one query, no N+1)."""
    if not attempt_ids:
        return {}
    out: dict[int, list[Chunk]] = {a: [] for a in attempt_ids}
    marks = ",".join("?" * len(attempt_ids))
    for r in db.execute(
        f"SELECT id, attempt_id, offset, head, data FROM output_chunks"
        f" WHERE attempt_id IN ({marks}) AND stream = ? ORDER BY attempt_id, id",
        (*attempt_ids, stream),
    ):
        out[r["attempt_id"]].append(Chunk(r["id"], stream, r["offset"], bool(r["head"]), r["data"]))
    return {a: assemble(cs).decode(errors="replace") for a, cs in out.items()}


def assemble(chunks: list[Chunk]) -> bytes:
    """Join one stream's chunks, saying how much was dropped where head and tail do not meet."""
    parts: list[bytes] = []
    expected = 0
    for chunk in chunks:
        if chunk.offset > expected:
            parts.append(dropped_marker(chunk.offset - expected))
        parts.append(chunk.data)
        expected = chunk.offset + len(chunk.data)
    return b"".join(parts)


def dropped_marker(n: int) -> bytes:
    return f"\n[taskd: {n} bytes of output dropped here]\n".encode()


ENTRY_TABLES = {
    "log": ("log_entries", "source", "message"),
    "metadata": ("metadata_entries", "key", "value"),
}


def add_entries_of(
    db: sqlite3.Connection,
    attempt_id: int,
    logs: list[tuple[str, int, str, str]],
    metadata: list[tuple[str, int, str, str]],
) -> None:
    """Append log entries and metadata of an attempt known by its row id (its own output)."""
    for kind, rows in (("log", logs), ("metadata", metadata)):
        if rows:
            table, a, b = ENTRY_TABLES[kind]
            db.executemany(
                f"INSERT OR IGNORE INTO {table} (uuid, attempt_id, at, {a}, {b})"
                " VALUES (?, ?, ?, ?, ?)",
                [(u, attempt_id, at, x, y) for u, at, x, y in rows],
            )


def attempt_open(db: sqlite3.Connection, attempt_id: int) -> bool:
    """Whether the attempt exists and has not ended (its output may still grow)."""
    row = db.execute("SELECT ended_at FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
    return row is not None and row["ended_at"] is None
