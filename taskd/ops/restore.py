"""``taskd restore BACKUP``: put a backup in place of the database, checked first.

Refuses while a server holds the database, refuses a backup that fails SQLite's integrity
check or comes from a newer taskd, and never leaves a half-written file: the copy is made
beside the target, checked again, then renamed over it. A replaced database is kept.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from taskd.store import integrity
from taskd.store.db import DatabaseLock
from taskd.store.migrations import migrations


class RestoreError(Exception):
    """The restore was refused; the message says why and what to do."""


def check(path: Path) -> int:
    """Integrity-check a database file; returns its schema version."""
    try:
        health = integrity.inspect(path)
    except sqlite3.DatabaseError as exc:
        raise RestoreError(f"{path} is not a taskd database: {exc}") from None
    if not health.has_runs:
        raise RestoreError(f"{path} is not a taskd database: it has no runs table")
    result, version = health.problems or ["ok"], health.version
    if result != ["ok"]:
        raise RestoreError(f"{path} fails the integrity check: {'; '.join(result[:3])}")
    newest = migrations()[-1][0]
    if version > newest:
        raise RestoreError(f"{path} is at schema {version}, newer than this taskd ({newest})")
    return version


def restore(backup: Path, db: Path, *, force: bool = False) -> Path | None:
    """Replace ``db`` with ``backup``; returns where the replaced database was kept."""
    if not backup.is_file():
        raise RestoreError(f"no backup at {backup}")
    lock = DatabaseLock(db)
    pid = lock.holder()
    if pid is not None:
        raise RestoreError(f"a taskd server (pid {pid or '?'}) is running on {db}; stop it first")
    check(backup)
    if db.exists() and not force:
        raise RestoreError(f"{db} exists; give --force to replace it (it is kept beside)")
    lock.acquire()  # no server may start while the file is swapped
    try:
        tmp = db.with_name(f".{db.name}.restoring")
        tmp.unlink(missing_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # never readable
        integrity.copy(backup, tmp)
        check(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        kept = None
        if db.exists():
            kept = db.with_name(f"{db.name}.replaced-{time.strftime('%Y%m%dT%H%M%S')}")
            os.replace(db, kept)
        # A stale WAL would be replayed onto the restored file: it belongs to the old one.
        for suffix in ("-wal", "-shm"):
            old = db.with_name(db.name + suffix)
            if old.exists():
                if kept is not None:
                    os.replace(old, kept.with_name(kept.name + suffix))
                else:
                    old.unlink()
        os.replace(tmp, db)
        dir_fd = os.open(db.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return kept
    finally:
        lock.release()
