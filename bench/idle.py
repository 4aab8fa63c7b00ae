"""The idle daemon: RSS and CPU of ``taskd serve`` holding 1,000 scheduled definitions.

Every definition is hourly (half an hour away), created over HTTP; nothing is due, so a daemon
that sleeps until its next slot uses no CPU. CPU time and context switches (all threads) are
read from /proc over the window; a busy-polling loop shows up in both. Baseline: a bare
aiohttp app measured the same way.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import (
    HEADERS,
    Daemon,
    Row,
    bare_app,
    context_switches,
    cpu_seconds,
    free_port,
    rss_mb,
    stop,
)


def definition(name: str, minutes: str = "0", seconds: str = "0") -> dict:
    return {
        "process_definition_name": name,
        "schedule": {
            "cron_schedule": {
                "seconds": seconds,
                "minutes": minutes,
                "hours": "*",
                "day_of_month": "*",
                "month": "*",
                "day_of_week": "?",
            }
        },
        "overlap_action": "allow",
        "task_definitions": [
            {
                "task_definition_name": "t",
                "dependencies": [],
                "executable": {"shell_script_command": {"script": "true"}},
            }
        ],
    }


async def put_definitions(url: str, docs: list[dict], concurrency: int = 8) -> float:
    """PUT every definition; returns the seconds it took."""
    todo = iter(docs)
    async with aiohttp.ClientSession(url, headers=HEADERS) as session:

        async def client() -> None:
            for doc in todo:
                name = doc["process_definition_name"]
                async with session.put(f"/api/process_definitions/{name}", json=doc) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"PUT {name}: {resp.status} {await resp.text()}")

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return time.perf_counter() - t0


def watch(pid: int, seconds: float) -> tuple[float, float, float]:
    """(CPU %, context switches/s, RSS MB) of a process over ``seconds``."""
    cpu0, sw0, t0 = cpu_seconds(pid), context_switches(pid), time.perf_counter()
    time.sleep(seconds)
    cpu1, sw1, t1 = cpu_seconds(pid), context_switches(pid), time.perf_counter()
    return 100 * (cpu1 - cpu0) / (t1 - t0), (sw1 - sw0) / (t1 - t0), rss_mb(pid)


def run(quick: bool) -> list[Row]:
    n, window = (1000, 3.0) if quick else (1000, 10.0)
    port = free_port()
    bare = bare_app(port)
    try:
        time.sleep(1.0)
        base_cpu, base_sw, base_rss = watch(bare.pid, window)
    finally:
        stop(bare)
    with (
        tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp,
        Daemon(Path(tmp) / "idle.db") as d,
    ):
        d.start()
        # Hourly, half an hour away: nothing fires while it is watched.
        minute = str((time.gmtime().tm_min + 30) % 60)
        docs = [definition(f"idle-{i:04d}", minutes=minute) for i in range(n)]
        put_s = asyncio.run(put_definitions(d.url, docs))
        time.sleep(2.0)  # let the puts' garbage and the writer settle
        cpu, sw, rss = watch(d.pid, window)
    detail = {
        "definitions": n,
        "window_s": window,
        "put_s": put_s,
        "context_switches_per_s": sw,
        "bare_context_switches_per_s": base_sw,
        "bare_cpu_percent": base_cpu,
    }
    return [
        Row(
            "idle_rss",
            f"idle daemon RSS, {n:,} scheduled definitions",
            rss,
            "MB",
            base_rss + 10,  # "at most 10 MB more than a bare aiohttp app"
            "<=",
            baseline=base_rss,
            baseline_unit="MB",
            baseline_what="bare aiohttp app RSS",
            detail=detail,
            bound=base_rss + 30,
        ),
        Row(
            "idle_cpu",
            f"idle daemon CPU, {n:,} scheduled definitions",
            cpu,
            "%",
            1.0,
            "<=",
            baseline=base_cpu,
            baseline_unit="%",
            baseline_what="bare aiohttp app CPU",
            detail=detail,
        ),
    ]
