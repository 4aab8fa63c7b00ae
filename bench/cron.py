"""Cron accuracy: a soak of many definitions with second-resolution schedules on ``taskd serve``.

Definition ``i`` fires every 10 seconds at second ``i % 10`` (``"seconds": "3/10"``), so a
tenth of them are due together every second (100 at once with 1,000 definitions), each run
one ``true`` shell task. After the soak the store is read directly: lateness is the run's
``created_at`` minus its slot (``runs.extra.slot``); every slot of the window must have exactly
one run. Baseline: a raw SQLite commit p99 (a fire is one commit).
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import Daemon, Row, pct, raw_commits
from bench.idle import definition, put_definitions

PERIOD = 10  # seconds between two slots of one definition


def expected_slots(names: list[str], start: int, end: int) -> set[tuple[str, int]]:
    """(definition, slot ns) of every slot in [start, end) seconds."""
    return {
        (name, t * 10**9)
        for i, name in enumerate(names)
        for t in range(start, end)
        if t % PERIOD == i % PERIOD
    }


def read_runs(db: Path) -> tuple[list[tuple[str, int, int, int | None]], Counter]:
    """(name, slot, created_at, first attempt created_at) of scheduled runs; ledger statuses."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT r.name, r.extra, r.created_at, MIN(a.created_at) FROM runs r"
            " LEFT JOIN attempts a ON a.run_id = r.id WHERE r.trigger = 'schedule'"
            " GROUP BY r.id"
        ).fetchall()
        ledger = Counter(
            dict(conn.execute("SELECT status, COUNT(*) FROM ledger GROUP BY status").fetchall())
        )
    finally:
        conn.close()
    return [(name, json.loads(extra)["slot"], at, att) for name, extra, at, att in rows], ledger


def run(quick: bool) -> list[Row]:
    n, soak = (100, 15) if quick else (1000, 60)
    names = [f"cron-{i:04d}" for i in range(n)]
    docs = [
        definition(name, minutes="*", seconds=f"{i % PERIOD}/{PERIOD}")
        for i, name in enumerate(names)
    ]
    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        commits = [s * 1000 for s in raw_commits(Path(tmp), 300)]
        db = Path(tmp) / "cron.db"
        with Daemon(db) as daemon:
            daemon.start()
            asyncio.run(put_definitions(daemon.url, docs))
            start = math.ceil(time.time()) + 1
            end = start + soak
            time.sleep(max(0.0, end + 2 - time.time()))  # the last slots have time to fire
        runs, ledger = read_runs(db)
    want = expected_slots(names, start, end)
    found = Counter((name, slot) for name, slot, _, _ in runs)
    in_window = [r for r in runs if (r[0], r[1]) in want]
    late = [(at - slot) / 1e6 for _, slot, at, _ in in_window]
    dispatched = [(att - slot) / 1e6 for _, slot, _, att in in_window if att is not None]
    missed = len(want - set(found))
    duplicated = sum(c - 1 for c in found.values() if c > 1)
    detail = {
        "definitions": n,
        "soak_s": soak,
        "slots": len(want),
        "runs": len(in_window),
        "p50_ms": pct(late, 50),
        "p99_ms": pct(late, 99),
        "max_ms": max(late, default=0),
        "dispatch_p50_ms": pct(dispatched, 50),
        "dispatch_p99_ms": pct(dispatched, 99),
        "ledger": dict(ledger),
        "raw_commit_p99_ms": pct(commits, 99),
    }
    what = f"cron, {n:,} definitions over {soak} s"
    return [
        Row(
            "cron_p99",
            f"{what}: slot to run created, p99",
            pct(late, 99),
            "ms",
            100,
            "<=",
            baseline=pct(commits, 99),
            baseline_unit="ms",
            baseline_what="raw SQLite commit p99",
            detail=detail,
        ),
        Row("cron_missed", f"{what}: slots missed", missed, "slots", 0, "<=", detail=detail),
        Row(
            "cron_duplicated",
            f"{what}: slots run twice",
            duplicated,
            "slots",
            0,
            "<=",
            detail=detail,
        ),
    ]
