"""Retention on a big store: how long each delete holds the writer.

A copy of the store of finished tasks (``bigstore.py``: 100 tasks a run, spread over the last
ten days; 10,000,000 tasks in the full suite, 100,000 with ``--quick``) is opened with
taskd's ``Store`` and one retention pass runs as ``taskd serve`` runs it, with rules that
find work: output older than 7 days and history older than 8 days are deleted. Every write
transaction's hold of the writer (``BEGIN IMMEDIATE`` to ``COMMIT``) is recorded; the figure
is the longest. The pass runs for at most ``BUDGET`` seconds: what a pass deletes later looks
the same as what it deleted first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bigstore import copy_store
from bench.common import Row, pct
from taskd.config import Settings
from taskd.engine.retention import Retention
from taskd.store import Store

BUDGET = 90.0  # seconds of the pass that are measured


def watch_holds(store: Store, holds: list[float]) -> None:
    """Record how long each write transaction holds the writer (the store's own batches)."""
    run_batch = store._run_batch

    def timed(batch: list[Any]) -> list:
        t0 = time.monotonic()
        try:
            return run_batch(batch)
        finally:
            holds.append(time.monotonic() - t0)

    store._run_batch = timed  # type: ignore[method-assign]


async def measure(db: Path, budget: float) -> dict[str, Any]:
    store = await Store.open(db)
    holds: list[float] = []
    watch_holds(store, holds)
    settings = dataclasses.replace(
        Settings(db=db),
        log_retention_days=7.0,
        keep_runs_days=8.0,
        keep_runs_per_definition=0,
    )
    retention = Retention(settings, store, active=set)
    t0 = time.perf_counter()
    done: dict[str, int] = {}
    try:
        async with asyncio.timeout(budget):
            done = await retention.run_pass()
    except TimeoutError:
        pass
    elapsed = time.perf_counter() - t0
    counts = await store.read(
        lambda c: {
            "runs_left": c.execute("SELECT COUNT(*) FROM runs").fetchone()[0],
            "output_chunks_left": c.execute("SELECT COUNT(*) FROM output_chunks").fetchone()[0],
        }
    )
    await store.close()
    return {
        "holds": holds,
        "elapsed_s": elapsed,
        "finished": bool(done),
        **counts,
    }


def run(quick: bool) -> list[Row]:
    runs = 1_000 if quick else 100_000
    budget = 20.0 if quick else BUDGET
    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        db = copy_store(runs, 100, Path(tmp) / "retention.db")
        found = asyncio.run(measure(db, budget))
    holds = sorted(found.pop("holds"))
    detail = {
        "tasks_in_store": runs * 100,
        "transactions": len(holds),
        "hold_p50_ms": pct(holds, 50) * 1000 if holds else None,
        "hold_p99_ms": pct(holds, 99) * 1000 if holds else None,
        "runs_deleted": runs - found["runs_left"],
        **found,
    }
    size = f"{runs * 100 / 1e6:g}M"
    return [
        Row(
            "retention_hold",
            f"{size} tasks stored: retention and output pruning, longest writer hold",
            holds[-1] * 1000 if holds else None,
            "ms",
            50,
            "<=",
            baseline=pct(holds, 50) * 1000 if holds else None,
            baseline_unit="ms",
            baseline_what="its median hold",
            detail=detail,
        )
    ]
