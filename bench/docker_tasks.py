"""Docker tasks: N busybox ``true`` containers through taskd vs the raw Docker API.

Both at the same concurrency on the same engine, in the same run. Raw: aiodocker create,
start, wait, remove per container. taskd: one run of N docker tasks in-process (``Services``,
the slots set to the concurrency), so each also has its output followed and stored, its state
changes committed, and its container removed. Per task, the time from dispatch to container
removed (taskd: the attempt's creation to the end of the runner's cleanup, noted by a wrapper
in the benchmark) against create to removed (raw); "added" is the difference of the medians.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiodocker

from bench.common import Row, docker_ready, pct
from bench.local_tasks import close_services, open_services, plan, settings
from taskd.models import JobSpec, RunState, TaskTemplate
from tests.dockerutil import remove_labelled

IMAGE = "taskd-test:latest"
CONCURRENCY = 4
RAW_LABEL = "taskd-bench"


async def raw(n: int, concurrency: int, mark: str) -> tuple[float, list[float]]:
    """Containers/s and per-container seconds of create/start/wait/remove."""
    todo = iter(range(n))
    spans: list[float] = []
    config = {
        "Image": IMAGE,
        "Cmd": ["true"],
        "Labels": {RAW_LABEL: mark},
        "HostConfig": {"NetworkMode": "none"},
    }
    async with aiodocker.Docker() as docker:

        async def worker() -> None:
            for _ in todo:
                t0 = time.perf_counter()
                container = await docker.containers.create(config)
                try:
                    await container.start()
                    await container.wait()
                finally:
                    await container.delete(force=True)
                spans.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - t0), spans


async def through_taskd(
    db: Path,
    n: int,
    concurrency: int,
    runner_name: str = "docker",
    seconds_per_job: float = 5,
    remove: Callable[[str], None] = remove_labelled,
) -> tuple[float, list[float]]:
    """n ``true`` jobs on ``runner_name`` through taskd's engine: the rate, and each job's time
    from its attempt's creation to the removal of what ran it. Also serves the swarm row."""
    svc = await open_services(settings(db, max_parallel=concurrency))
    runner = svc.engine.runners[runner_name]
    removed: dict[str, int] = {}  # attempt uuid -> when its container/service was removed (ns)
    all_removed = asyncio.Event()
    cleanup = runner.cleanup

    async def noting_cleanup(ctx, started):  # the benchmark's probe, not taskd's code
        await cleanup(ctx, started)
        removed[ctx.attempt_uuid] = time.time_ns()
        if len(removed) == n:
            all_removed.set()

    runner.cleanup = noting_cleanup
    try:
        job = JobSpec(runner=runner_name, image=IMAGE, command=("true",))
        t0 = time.perf_counter()
        run = await svc.engine.submit(plan([TaskTemplate(f"j{i}", job) for i in range(n)]))
        await asyncio.wait_for(all_removed.wait(), 60 + n * seconds_per_job)
        rate = n / (time.perf_counter() - t0)
        if run.state is not RunState.SUCCEEDED:
            raise RuntimeError(f"the run ended {run.state}")
        created = await svc.store.read(
            lambda db: {r[0]: r[1] for r in db.execute("SELECT uuid, created_at FROM attempts")}
        )
        return rate, [(removed[u] - created[u]) / 1e9 for u in removed]
    finally:
        await close_services(svc)
        remove(f"taskd.instance={svc.instance}")  # only this store's containers or services


def run(quick: bool) -> list[Row]:
    n = 40 if quick else 200
    why = docker_ready(IMAGE)
    what = f"docker tasks, {n} containers at concurrency {CONCURRENCY}"
    if why:
        return [
            Row("docker_throughput", f"{what}, of raw throughput", None, "%", 80, skipped=why),
            Row("docker_added", f"{what}, added per task p50", None, "ms", 25, "<=", skipped=why),
        ]
    mark = secrets.token_hex(4)  # this run's raw containers, and no one else's
    try:
        asyncio.run(raw(CONCURRENCY, CONCURRENCY, mark))  # warm the engine up
        base_rate, base_spans = asyncio.run(raw(n, CONCURRENCY, mark))
    finally:
        remove_labelled(f"{RAW_LABEL}={mark}")
    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        rate, spans = asyncio.run(through_taskd(Path(tmp) / "docker.db", n, CONCURRENCY))
    added = (pct(spans, 50) - pct(base_spans, 50)) * 1000
    detail = {
        "containers": n,
        "concurrency": CONCURRENCY,
        "taskd_per_s": rate,
        "raw_per_s": base_rate,
        "taskd_p50_ms": pct(spans, 50) * 1000,
        "raw_p50_ms": pct(base_spans, 50) * 1000,
        "taskd_p99_ms": pct(spans, 99) * 1000,
        "raw_p99_ms": pct(base_spans, 99) * 1000,
    }
    return [
        Row(
            "docker_throughput",
            f"{what}, of raw throughput",
            100 * rate / base_rate,
            "%",
            80,
            baseline=base_rate,
            baseline_unit="containers/s",
            baseline_what="raw aiodocker create/start/wait/remove",
            detail=detail,
        ),
        Row(
            "docker_added",
            f"{what}, added per task p50",
            added,
            "ms",
            25,
            "<=",
            baseline=pct(base_spans, 50) * 1000,
            baseline_unit="ms",
            baseline_what="raw container lifecycle p50",
            detail=detail,
            # A difference of two medians of ~0.5 s each: noisy on a busy engine.
            bound=250,
        ),
    ]
