"""Numbered, append-only schema migrations: ``NNNN_name.sql``, applied in order at start.

``PRAGMA user_version`` holds the number of the last migration applied. A database written by
a newer taskd (a higher number than the newest file here) is refused rather than guessed at.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from taskd.errors import StoreError

HERE = Path(__file__).parent
NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, Path]]:
    found = []
    for path in sorted(HERE.glob("*.sql")):
        m = NAME.match(path.name)
        if not m:
            raise StoreError(f"badly named migration {path.name}")
        found.append((int(m.group(1)), path))
    return found


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration newer than the database; return the resulting version."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    known = migrations()
    newest = known[-1][0] if known else 0
    if current > newest:
        raise StoreError(
            f"the database is at schema version {current}, newer than this taskd "
            f"(which knows up to {newest}); upgrade taskd"
        )
    for number, path in known:
        if number <= current:
            continue
        script = path.read_text()
        # executescript commits first; wrap each migration so it applies whole or not at all.
        conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version={number};\nCOMMIT;")
        current = number
    return current
