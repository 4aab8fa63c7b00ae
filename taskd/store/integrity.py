"""Looking at a database file from outside a server: integrity, identity, copies.

For ``taskd doctor`` and ``taskd restore``, which work on a file (read-only where they can),
not through a running store.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Health:
    """What a database file says about itself."""

    problems: list[str]  # empty when SQLite's integrity check passes
    version: int  # the schema version (PRAGMA user_version)
    instance: str | None  # the id its containers are labelled with
    has_runs: bool  # it has taskd's tables


def inspect(path: Path) -> Health:
    """Integrity-check a database file, read-only; sqlite3.DatabaseError when unreadable."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = [r[0] for r in conn.execute("PRAGMA integrity_check(20)")]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        instance = None
        if "meta" in tables:
            row = conn.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()
            instance = row[0] if row else None
    finally:
        conn.close()
    return Health([] if result == ["ok"] else result, version, instance, "runs" in tables)


def active_attempts(path: Path) -> set[str]:
    """The attempts the database holds as starting or running."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute(
            "SELECT uuid FROM attempts WHERE state IN ('starting', 'running')")}  # fmt: skip
    finally:
        conn.close()


def copy(src: Path, dest: Path) -> None:
    """A consistent copy of ``src`` into ``dest`` (which exists, empty), as one file."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    out = sqlite3.connect(str(dest))
    try:
        source.backup(out)
        out.execute("PRAGMA journal_mode=DELETE")  # self-contained: no WAL beside it
    finally:
        out.close()
        source.close()
