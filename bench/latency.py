"""Scheduling latency: from a task's last parent being recorded finished to runner.start.

In-process, with capacity for every task. The benchmark wraps the engine's commit to note
when a parent's success is committed, and replaces the local runner with a stand-in whose
start notes the call, so the figure is the engine's own cost (commits, dispatch), not process
spawning. Two shapes:

- burst: layers alternate one task and 1,000 tasks that all depend on it (the next single
  task depends on all of them), so 1,000 tasks become ready at the same instant;
- steady: 1,000 independent chains whose stand-in jobs last a random 0-2 s, so about 1,000
  tasks are active at any time and hand-offs arrive spread out, as in real use.

Baseline: a raw SQLite commit (one row, WAL + FULL): the engine commits a task's start before
it calls the runner, so one commit is the floor.

The burst's details also give ``first_start_ms``: from the commit that makes the 1,000 tasks
ready to the first of them started (median over the rounds). Like ``taskd serve`` once it has
started, the benchmark freezes what exists before the run (``gc.freeze``), so collections do
not walk the imported modules.
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from bench.common import Row, pct, raw_commits
from bench.local_tasks import close_services, open_services, plan, settings
from taskd.models import AttemptState, JobSpec, Outcome, RunState, TaskState, TaskTemplate
from taskd.runners.base import AttemptContext, OutputSink, Started
from taskd.runners.local import LocalRunner

WIDTH = 1000
JOB = JobSpec(runner="local", command=("/bin/true",))


def burst(width: int, rounds: int) -> list[TaskTemplate]:
    templates = [TaskTemplate("join-0", JOB)]
    for b in range(rounds):
        wide = [f"w{b}-{i}" for i in range(width)]
        templates += [TaskTemplate(name, JOB, parents=[(f"join-{b}", True)]) for name in wide]
        templates.append(TaskTemplate(f"join-{b + 1}", JOB, parents=[(n, True) for n in wide]))
    return templates


def chains(width: int, length: int) -> list[TaskTemplate]:
    return [
        TaskTemplate(f"c{c}-{i}", JOB, parents=[(f"c{c}-{i - 1}", True)] if i else [])
        for c in range(width)
        for i in range(length)
    ]


async def measure(
    db: Path, templates: list[TaskTemplate], job_seconds: float, firsts: list[float] | None = None
) -> list[float]:
    """Latencies (ms) of every task that has parents; ``firsts`` gets each fan-out's first."""
    svc = await open_services(settings(db, max_parallel=len(templates)))
    gc.freeze()  # as taskd serve does once started
    engine = svc.engine
    finished: dict[int, int] = {}  # task id -> when its success was committed (ns)
    started: dict[int, int] = {}  # task id -> when runner.start was called (ns)

    class StandIn(LocalRunner):
        async def start(self, ctx: AttemptContext) -> Started:
            started[ctx.task_id] = time.perf_counter_ns()
            return Started(host="bench")

        async def wait(
            self,
            ctx: AttemptContext,
            started: Started,
            sink: OutputSink,
            skip: Mapping[str, int] | None = None,
        ) -> Outcome:
            if job_seconds:
                await asyncio.sleep(random.uniform(0, job_seconds))
            return Outcome(AttemptState.EXITED, exit_code=0)

    engine.runners["local"] = StandIn(engine.settings, engine.instance)
    commit = engine._commit

    async def noting_commit(ch):  # the benchmark's probe, not taskd's code
        ids = await commit(ch)
        at = time.perf_counter_ns()
        for task_id, cols in ch.tasks.items():
            if cols.get("state") == TaskState.SUCCEEDED:
                finished[task_id] = at
        return ids

    engine._commit = noting_commit
    try:
        run = await engine.submit(plan(templates))
        await asyncio.wait_for(run.done.wait(), 600)
        if run.state is not RunState.SUCCEEDED:
            raise RuntimeError(f"the run ended {run.state}")
        by_trigger: dict[int, list[float]] = {}
        for task in run.tasks.values():
            if task.parents:
                trigger = max(finished[p.id] for p, _ in task.parents)
                by_trigger.setdefault(trigger, []).append((started[task.id] - trigger) / 1e6)
        if firsts is not None:
            firsts += [min(lat) for lat in by_trigger.values() if len(lat) > 1]
        return [x for lat in by_trigger.values() for x in lat]
    finally:
        await close_services(svc)


def run(quick: bool) -> list[Row]:
    rounds, length = (2, 2) if quick else (5, 6)
    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        commits = [s * 1000 for s in raw_commits(Path(tmp), 300)]
        firsts: list[float] = []
        hot = asyncio.run(measure(Path(tmp) / "burst.db", burst(WIDTH, rounds), 0.0, firsts))
        calm = asyncio.run(measure(Path(tmp) / "steady.db", chains(WIDTH, length), 2.0))
    base = {"raw_commit_p50_ms": pct(commits, 50), "raw_commit_p99_ms": pct(commits, 99)}
    rows = []
    for key, what, lat, bounds, p50_target in (
        ("burst", f"{WIDTH:,} tasks ready at once", hot, (250, 500), 15),
        ("steady", f"{WIDTH:,} active chains", calm, (None, None), 5),
    ):
        detail = {
            **base,
            "samples": len(lat),
            "p50_ms": pct(lat, 50),
            "p90_ms": pct(lat, 90),
            "p99_ms": pct(lat, 99),
            "max_ms": max(lat),
        }
        if key == "burst":  # the first of each burst started this long after its trigger
            detail["first_start_ms"] = statistics.median(firsts)
        rows += [
            Row(
                f"latency_{key}_p50",
                f"scheduling latency p50, {what}",
                pct(lat, 50),
                "ms",
                p50_target,  # the issue's: 15 ms for a burst, 5 ms for steady work
                "<=",
                baseline=pct(commits, 50),
                baseline_unit="ms",
                baseline_what="raw SQLite commit p50",
                detail=detail,
                bound=bounds[0],
            ),
            Row(
                f"latency_{key}_p99",
                f"scheduling latency p99, {what}",
                pct(lat, 99),
                "ms",
                50,
                "<=",
                baseline=pct(commits, 99),
                baseline_unit="ms",
                baseline_what="raw SQLite commit p99",
                detail=detail,
                bound=bounds[1],
            ),
        ]
    rows.append(
        Row(
            "latency_burst_first",
            f"first start after the commit making {WIDTH:,} tasks ready",
            statistics.median(firsts),
            "ms",
            5,
            "<=",
            baseline=pct(commits, 50),
            baseline_unit="ms",
            baseline_what="raw SQLite commit p50",
            detail={"rounds": len(firsts), "all_ms": [round(x, 2) for x in firsts]},
        )
    )
    return rows
