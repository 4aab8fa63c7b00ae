"""Scale: list and search endpoints of ``taskd serve`` on a store of 1,000,000 finished tasks.

The store is built as for the start-up row (10,000 process runs x 100 tasks, 100 definitions).
Each endpoint is asked sequentially, one request at a time, after a warm-up; the figure is the
median answer time (p99 in the JSON). Baseline: ``GET /ready`` on the same server (what HTTP
alone costs).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.bigstore import copy_store, definition_name
from bench.common import HEADERS, Daemon, Row, pct

NAME = definition_name(7)
# key -> (label, path, bound for --quick): the newest-first lists that are missed by more than
# 3x (docs/benchmarks.md says why) get bounds near today's figure, so CI still catches worse.
ENDPOINTS = {
    "processes": ("newest 100 processes", "/api/processes/?max_records=100", 600),
    "processes_by_name": (
        "newest 100 processes of a definition",
        f"/api/processes/?process_definition_name={NAME}&max_records=100",
        None,
    ),
    "tasks_by_name": (
        "newest 100 tasks of a definition",
        f"/api/tasks?process_definition_name={NAME}&limit=100",
        None,
    ),
    "tasks": ("newest 100 tasks", "/api/tasks?limit=100", 500),
    "tasks_failed": (
        "newest 100 failed tasks",
        "/api/tasks?allowed_statuses=failed&limit=100",
        None,
    ),
    "tasks_by_task_name": (
        "newest 100 tasks of a task name",
        "/api/tasks?task_definition_name=task-042&limit=100",
        None,
    ),
    "metrics": ("metrics", "/_internal_/metrics", None),
}


async def timings(url: str, path: str, n: int, budget: float) -> list[float]:
    """Seconds per request for up to ``n`` sequential requests (fewer if ``budget`` runs out)."""
    out: list[float] = []
    async with aiohttp.ClientSession(url, headers=HEADERS) as session:
        for _ in range(3):  # warm up
            async with session.get(path) as resp:
                await resp.read()
        end = time.perf_counter() + budget
        while len(out) < n and (len(out) < 5 or time.perf_counter() < end):
            t0 = time.perf_counter()
            async with session.get(path) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"GET {path}: {resp.status}")
            out.append(time.perf_counter() - t0)
    return out


def run(quick: bool) -> list[Row]:
    runs, tasks, n, budget = (1000, 100, 20, 3.0) if quick else (10_000, 100, 100, 10.0)
    found: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        db = copy_store(runs, tasks, Path(tmp) / "scale.db")
        with Daemon(db) as daemon:
            daemon.start()
            base = asyncio.run(timings(daemon.url, "/ready", n, budget))
            for key, (_, path, _) in ENDPOINTS.items():
                found[key] = asyncio.run(timings(daemon.url, path, n, budget))
    rows = []
    for key, lat in found.items():
        label, path, bound = ENDPOINTS[key]
        ms = [s * 1000 for s in lat]
        rows.append(
            Row(
                f"scale_{key}",
                f"{runs * tasks / 1e6:g}M tasks stored: {label}",
                pct(ms, 50),
                "ms",
                50,
                "<=",
                baseline=pct(base, 50) * 1000,
                baseline_unit="ms",
                baseline_what="GET /ready p50, same server",
                detail={"path": path, "samples": len(ms), "p99_ms": pct(ms, 99), "max_ms": max(ms)},
                bound=bound,
            )
        )
    return rows
