"""The DAG and work-queue rows: ``bench_dag.py`` and ``bench_queue.py``, run as scripts.

Each is called as ``python bench/bench_X.py --json PATH [size options]`` and its JSON read
back into rows. A script that is absent, or whose JSON lacks a figure, gives skipped rows; one
that fails gives an error row. Size options are passed only when the script's ``--help``
lists them, so either script may change its options without breaking the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, Row, raw_commits

HERE = Path(__file__).resolve().parent


def call(script: str, options: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run ``script`` with the options it knows; its JSON, or raise with its output."""
    path = HERE / script
    usage = subprocess.run(
        [sys.executable, str(path), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    ).stdout
    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        out = Path(tmp) / "out.json"
        argv = [sys.executable, str(path), "--json", str(out)]
        for flag, value in options.items():
            if flag in usage:
                argv += [flag] if value is True else [flag, str(value)]
        env = {k: v for k, v in os.environ.items() if k != "BENCH_SERVER"}  # ours, not theirs
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT, env=env
        )
        if done.returncode != 0 or not out.exists():
            tail = (done.stdout + done.stderr)[-1500:]
            raise RuntimeError(f"{script} exited with {done.returncode}: {tail}")
        return json.loads(out.read_text())


def dig(doc: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def missing(row: Row, script: str) -> Row:
    if row.figure is None and not row.skipped:
        row.skipped = f"{script} gave no such figure"
    return row


def raw_bulk_insert(n: int) -> float:
    """Seconds to insert ``n`` task-sized rows in one raw SQLite transaction (WAL + FULL)."""
    import sqlite3

    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        db = sqlite3.connect(str(Path(tmp) / "bulk.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, run INTEGER, name TEXT, job TEXT,"
            " UNIQUE (run, name))"
        )
        job = json.dumps({"runner": "local", "command": ["/bin/true"], "env": []})
        t0 = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO t (run, name, job) VALUES (1, ?, ?)", [(f"t{i}", job) for i in range(n)]
        )
        db.execute("COMMIT")
        seconds = time.perf_counter() - t0
        db.close()
        return seconds


def dag(quick: bool) -> list[Row]:
    script = "bench_dag.py"
    sizes = [(2000, 250.0)] if quick else [(10_000, 250.0), (100_000, 2500.0)]
    rows = []
    for n, target in sizes:
        what = f"DAG of {n:,} tasks"
        submit = Row(f"dag_submit_{n}", f"{what}: accepted, stored", None, "ms", target, "<=")
        api = Row(f"dag_api_{n}", f"{what}: API p99 meanwhile", None, "ms", 50, "<=")
        rows += [submit, api]
        if not (HERE / script).exists():
            submit.skipped = api.skipped = f"{script} is absent"
            continue
        try:
            doc = call(script, {"--tasks": n, "--seconds": 2 if quick else 5}, 1800)
        except Exception as exc:  # one size failing leaves the others measured
            submit.error = api.error = str(exc)
            continue
        latencies = dig(doc, "server", "latency") or {}
        during = dig(doc, "server", "latency_during_submit") or {}
        submit.figure = dig(doc, "server", "submit_ms")
        submit.baseline = raw_bulk_insert(n) * 1000
        submit.baseline_unit = "ms"
        submit.baseline_what = f"raw SQLite insert of {n:,} rows, one commit"
        submit.detail = doc
        # The full run record is a document of every task: its time grows with the DAG, so
        # it is kept apart from the light endpoints whose p99 the target is about.
        # Both while the DAG is accepted and while it runs.
        light = [
            v.get("p99_ms", 0)
            for sample in (latencies, during)
            for k, v in sample.items()
            if "(full)" not in k
        ]
        api.figure = max(light, default=None)
        api.detail = {"latency": latencies, "latency_during_submit": during}
        missing(submit, script)
        missing(api, script)
    return rows


def queue(quick: bool) -> list[Row]:
    script = "bench_queue.py"
    figures = {
        "single_submits_per_s": ("queue_submit", "work queue: single submits", 1500, "submits/s"),
        "bulk_tasks_per_s": ("queue_bulk", "work queue: bulk submits", 10_000, "tasks/s"),
        "cycles_per_s": ("queue_cycles", "work queue: lease+release, 16 workers", 6500, "cycles/s"),
        "batch_cycles_per_s": (
            "queue_batch_cycles",
            "work queue: batch lease (count=16) + release, 16 workers",
            6500,
            "cycles/s",
        ),
        "batch_release_cycles_per_s": (
            "queue_batch_release_cycles",
            "work queue: batch lease (count=16) + batch release, 16 workers",
            6500,
            "cycles/s",
        ),
        "sequential_submits_per_s": (
            "queue_sequential",
            "work queue: sequential submits, one keep-alive client",
            4000,
            "submits/s",
        ),
    }
    # CI bounds for the new rows: a busy CI machine is far from the targets; a collapse is not.
    bounds = {
        "cycles_per_s": 600,
        "batch_cycles_per_s": 1000,
        "batch_release_cycles_per_s": 1000,
        "sequential_submits_per_s": 500,
    }
    rows = {key: Row(name, what, None, unit, target, bound=bounds.get(key))
            for key, (name, what, target, unit) in figures.items()}  # fmt: skip
    if not (HERE / script).exists():
        for row in rows.values():
            row.skipped = f"{script} is absent"
        return list(rows.values())
    options = (
        {"--submits": 1000, "--bulks": 6, "--cycles": 2000, "--sequential": 500} if quick else {}
    )
    try:
        doc = call(script, options, 600 if quick else 1800)
    except Exception as exc:
        for row in rows.values():
            row.error = str(exc)
        return list(rows.values())
    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        commits = raw_commits(Path(tmp), 500)
    for key, row in rows.items():
        row.figure = doc.get(key)
        row.baseline = len(commits) / sum(commits)
        row.baseline_unit = "commits/s"
        row.baseline_what = "raw SQLite commits, one row each"
        row.detail = doc
        missing(row, script)
    return list(rows.values())
