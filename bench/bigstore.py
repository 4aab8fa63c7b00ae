"""A large store of finished work, built fast with direct SQLite inserts in taskd's schema.

``runs`` process runs of ``tasks`` tasks each (10,000 x 100 = 1,000,000 finished tasks in the
full suite), spread over 100 definitions and the last ten days, each task with one attempt,
one captured output chunk and its state changes, each run with its ledger slot. The file is
built once per schema and size (and week) and kept in the temp directory; benchmarks work on
a copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

from taskd.models import JobSpec
from taskd.store.migrations import HERE, migrate
from taskd.store.runs import dumps

DEFINITIONS = 100
CACHE = Path(tempfile.gettempdir()) / "taskd-bench-cache"


def definition_name(i: int) -> str:
    return f"bench-def-{i % DEFINITIONS:03d}"


def cached_store(runs: int, tasks: int) -> Path:
    """The path of a pristine store of that size (built now if it is not cached yet)."""
    schema = hashlib.sha256(
        b"".join(p.name.encode() + p.read_bytes() for p in sorted(HERE.glob("*.sql")))
    )  # names too: a renumbered migration changes the schema version
    path = CACHE / f"big-{runs}x{tasks}-{schema.hexdigest()[:12]}.db"
    # Its runs are dated relative to the build; rebuild before output retention would apply.
    if path.exists() and time.time() - path.stat().st_mtime > 7 * 86400:
        path.unlink()
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        build(partial, runs, tasks)
        partial.rename(path)
    return path


def copy_store(runs: int, tasks: int, dest: Path) -> Path:
    shutil.copyfile(cached_store(runs, tasks), dest)
    # On disk before it is measured: a fresh copy's gigabytes of dirty pages would otherwise
    # be flushed by the first commit's fsync (a 1.2 s "write" that no real store has).
    with open(dest, "rb+") as fh:
        os.fsync(fh.fileno())
    return dest


def build(path: Path, runs: int, tasks: int) -> None:
    db = sqlite3.connect(str(path), isolation_level=None)
    migrate(db)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-262144")
    now = time.time_ns()
    span = 10 * 86400 * 10**9  # runs spread over the last ten days, oldest first
    script = "echo hello"
    job = dumps(JobSpec(runner="local", script=script).to_doc())
    doc = {
        "process_definition_name": "",
        "process_description": "",
        "paused": False,
        "overlap_action": "wait",
        "missed_slots": "collapse",
        "notifications": [],
        "task_definitions": [
            {
                "task_definition_name": f"task-{j:03d}",
                "dependencies": [],
                "executable": {
                    "shell_script_command": {"script": script, "environment_variables": []}
                },
                "max_attempts": 1,
                "backoff_base_seconds": 0,
                "backoff_exponent": 1.0,
                "require_explicit_success": False,
            }
            for j in range(tasks)
        ],
    }
    db.execute("BEGIN")
    for i in range(DEFINITIONS):
        name = definition_name(i)
        text = dumps({**doc, "process_definition_name": name})
        db.execute("INSERT INTO definitions VALUES (?, 1, ?, 0, ?, ?)", (name, text, now, now))
        db.execute("INSERT INTO definition_versions VALUES (?, 1, ?, ?)", (name, text, now))
    task_id = attempt_id = 0
    host = os.uname().nodename
    for r in range(1, runs + 1):
        at = now - span + r * (span // runs)
        end = at + 5 * 10**9
        name = definition_name(r)
        db.execute(
            "INSERT INTO runs (id, uuid, kind, name, definition_version, trigger, params, state,"
            " extra, created_at, started_at, ended_at, updated_at)"
            " VALUES (?, ?, 'process', ?, 1, 'schedule', '{}', 'succeeded', ?, ?, ?, ?, ?)",
            (r, str(uuid.uuid4()), name, dumps({"slot": at}), at, at, end, end),
        )
        db.execute("INSERT INTO ledger VALUES (?, ?, 'fired', ?, ?)", (name, at, r, at))
        task_rows, attempt_rows, changes, chunks = [], [], [], []
        changes += [(r, None, s, at) for s in ("queued", "running", "succeeded")]
        for j in range(tasks):
            task_id += 1
            attempt_id += 1
            t0 = at + j * 10**7
            token_hash = hashlib.sha256(str(attempt_id).encode()).hexdigest()
            task_rows.append((task_id, r, f"task-{j:03d}", job, t0))
            attempt_rows.append(
                (attempt_id, str(uuid.uuid4()), r, task_id, 1000 + j, host, token_hash, t0)
            )
            changes += [(r, task_id, s, t0) for s in ("ready", "running", "succeeded")]
            chunks.append((attempt_id, "stdout", 0, 1, b"hello\n"))
        db.executemany(
            "INSERT INTO tasks (id, run_id, name, template, state, job, max_attempts, attempts,"
            " updated_at) VALUES (?1, ?2, ?3, ?3, 'succeeded', ?4, 1, 1, ?5)",
            task_rows,
        )
        db.executemany(
            "INSERT INTO attempts (id, uuid, run_id, task_id, number, state, succeeded,"
            " exit_code, runner, pid, host, token_hash, created_at, started_at, ended_at)"
            " VALUES (?1, ?2, ?3, ?4, 1, 'exited', 1, 0, 'local', ?5, ?6, ?7, ?8, ?8,"
            " ?8 + 1000000)",
            attempt_rows,
        )
        db.executemany(
            "INSERT INTO state_changes (run_id, task_id, state, at) VALUES (?, ?, ?, ?)", changes
        )
        db.executemany(
            "INSERT INTO output_chunks (attempt_id, stream, offset, head, data)"
            " VALUES (?, ?, ?, ?, ?)",
            chunks,
        )
        if r % 500 == 0:
            db.execute("COMMIT")
            db.execute("BEGIN")
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


if __name__ == "__main__":
    import sys

    t0 = time.perf_counter()
    print(cached_store(int(sys.argv[1]), int(sys.argv[2])), f"{time.perf_counter() - t0:.1f} s")
