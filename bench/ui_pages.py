"""Dashboard pages of ``taskd serve`` on a store of 1,000,000 finished tasks.

The store is the scale row's (10,000 process runs x 100 tasks, 100 definitions). A session is
opened with the admin token, then each page is asked sequentially after a warm-up; the figure
is the median time to the whole rendered page (p99 in the JSON). Baseline: ``GET /ready`` on
the same server.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.bigstore import copy_store, definition_name
from bench.common import TOKEN, Daemon, Row, pct

NAME = definition_name(7)
TARGET_MS = 200


def pages(db: Path) -> dict[str, tuple[str, str]]:
    """key -> (label, path); a run and an attempt of the store are picked for the detail pages."""
    conn = sqlite3.connect(db)
    try:
        run = conn.execute("SELECT uuid FROM runs ORDER BY id DESC LIMIT 1").fetchone()[0]
        attempt = conn.execute("SELECT uuid FROM attempts ORDER BY id DESC LIMIT 1").fetchone()[0]
        middle = conn.execute("SELECT MAX(id) / 2 FROM runs").fetchone()[0]
    finally:
        conn.close()
    return {
        "overview": ("overview", "/"),
        "definitions": ("definitions with their last 20 runs", "/ui/definitions"),
        "runs": ("newest 50 runs", "/ui/runs"),
        "runs_page": ("50 runs, a page in the middle", f"/ui/runs?before={middle}"),
        "runs_by_name": ("newest 50 runs of a definition", f"/ui/runs?name={NAME}"),
        "runs_failed": ("newest failed runs (none)", "/ui/runs?state=failed"),
        "run": ("a run of 100 tasks", f"/ui/runs/{run}"),
        "graph": ("its graph (JSON)", f"/ui/runs/{run}/graph.json"),
        "logs": ("a task's logs", f"/ui/attempts/{attempt}/logs"),
        "queue": ("work queue", "/ui/queue"),
    }


async def timings(url: str, paths: dict[str, str], n: int, budget: float) -> dict[str, list]:
    out: dict[str, list[float]] = {}
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(url, cookie_jar=jar) as session:
        async with session.post("/ui/login", data={"token": TOKEN}, allow_redirects=False) as r:
            if r.status != 303:
                raise RuntimeError(f"sign-in failed: {r.status}")
        for key, path in paths.items():
            for _ in range(3):  # warm up
                async with session.get(path) as resp:
                    await resp.read()
            found: list[float] = []
            end = time.perf_counter() + budget
            while len(found) < n and (len(found) < 5 or time.perf_counter() < end):
                t0 = time.perf_counter()
                async with session.get(path) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"GET {path}: {resp.status}")
                found.append(time.perf_counter() - t0)
            out[key] = found
    return out


def run(quick: bool) -> list[Row]:
    runs, tasks, n, budget = (1000, 100, 20, 2.0) if quick else (10_000, 100, 50, 5.0)
    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        db = copy_store(runs, tasks, Path(tmp) / "ui.db")
        chosen = pages(db)
        with Daemon(db) as daemon:
            daemon.start()
            base = asyncio.run(timings(daemon.url, {"ready": "/ready"}, n, budget))["ready"]
            found = asyncio.run(
                timings(daemon.url, {k: p for k, (_, p) in chosen.items()}, n, budget)
            )
    rows = []
    for key, lat in found.items():
        label, path = chosen[key]
        ms = [s * 1000 for s in lat]
        rows.append(
            Row(
                f"ui_{key}",
                f"{runs * tasks / 1e6:g}M tasks stored: dashboard, {label}",
                pct(ms, 50),
                "ms",
                TARGET_MS,
                "<=",
                baseline=pct(base, 50) * 1000,
                baseline_unit="ms",
                baseline_what="GET /ready p50, same server",
                detail={
                    "path": path.split("?")[0],
                    "samples": len(ms),
                    "p99_ms": pct(ms, 99),
                    "max_ms": max(ms),
                },
            )
        )
    return rows
