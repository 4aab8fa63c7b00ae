"""Local-process tasks end to end: one run of N ``/bin/true`` argv tasks, no edges.

In-process (``taskd.app.Services`` on a fresh store, the default 16 slots): the clock
runs from ``Engine.submit`` to the run's end, so it covers storing the run, dispatch, spawn,
output capture, every state change committed. Baseline: raw ``asyncio.create_subprocess_exec``
of ``/bin/true`` at the same concurrency, piped the same way.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import Row, raw_spawns
from taskd.app import Services
from taskd.config import Settings
from taskd.models import JobSpec, RunKind, RunState, TaskTemplate
from taskd.store.runs import RunPlan

SLOTS = 16


def settings(db: Path, **kw) -> Settings:
    kw.setdefault("max_parallel", SLOTS)
    return Settings(
        db=db, admin_token="bench", docker_network="none", shutdown_grace=1.0, kill_grace=1.0, **kw
    )


async def open_services(s: Settings) -> Services:
    svc = await Services.open(s)
    await svc.engine.start()
    await svc.scheduler.start()
    return svc


async def close_services(svc: Services) -> None:
    await svc.scheduler.stop()
    await svc.engine.stop()
    await svc.close()


def plan(templates: list[TaskTemplate]) -> RunPlan:
    return RunPlan(
        kind=RunKind.DAG, name="bench", trigger="api", uuid=str(uuid.uuid4()), tasks=templates
    )


async def through_taskd(db: Path, n: int) -> float:
    svc = await open_services(settings(db))
    try:
        job = JobSpec(runner="local", command=("/bin/true",))
        templates = [TaskTemplate(f"t{i}", job) for i in range(n)]
        t0 = time.perf_counter()
        run = await svc.engine.submit(plan(templates))
        await asyncio.wait_for(run.done.wait(), 600)
        seconds = time.perf_counter() - t0
        if run.state is not RunState.SUCCEEDED:
            raise RuntimeError(f"the run ended {run.state}")
        return n / seconds
    finally:
        await close_services(svc)


def run(quick: bool) -> list[Row]:
    n = 1000 if quick else 10_000
    base = asyncio.run(raw_spawns(n, SLOTS))
    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        rate = asyncio.run(through_taskd(Path(tmp) / "local.db", n))
    return [
        Row(
            "local_tasks",
            f"local-process tasks, submit to finished, {n:,} tasks",
            rate,
            "tasks/s",
            300,
            ">=",
            baseline=base,
            baseline_unit="spawns/s",
            baseline_what=f"raw process spawn at concurrency {SLOTS}",
            detail={"tasks": n, "slots": SLOTS, "of_baseline_percent": 100 * rate / base},
        )
    ]
