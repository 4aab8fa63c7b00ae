"""Docker tasks: busybox ``true`` containers through taskd vs the raw Docker API.

Both at the same concurrency on the same engine, in interleaved batches: each round runs one
batch of raw containers and one batch of taskd tasks (raw first in even rounds, taskd first in
odd ones), so both sides see the same load drift of a shared machine. Raw: aiodocker create,
start, wait, remove per container. taskd: one run of the batch's docker tasks in-process
(``Services``, the slots set to the concurrency), so each also has its output followed and
stored, its state changes committed, and its container removed. Per task, the time from
dispatch to container removed (taskd: the attempt's creation to the end of the runner's
cleanup, noted by a wrapper in the benchmark) against create to removed (raw).

"added" is the difference of the pooled medians, with a 95 % confidence interval from a
bootstrap over rounds (whole rounds drawn with replacement, both sides of a round together,
since a round's load affects both). Rounds are added (up to a limit) while the interval still
straddles the target. The row is met only when the interval's upper end is within the
target, missed when its lower end is beyond it, and unsettled otherwise.

Engine API calls are counted at the client: every HTTP request an ``aiodocker`` client sends
goes through ``Docker._do_query``, which the benchmark wraps to count per client and endpoint.
For taskd that is the docker runner's client from the run's submission to the last removal,
divided by the tasks (calls shared by all tasks count once divided by the tasks); what taskd
does once when it starts (the recovery sweep, the client's API version check) is counted
apart. For raw, the client's API version checks are left out likewise.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiodocker

from bench.common import Row, docker_ready, pct
from bench.local_tasks import close_services, plan, settings
from taskd.app import Services
from taskd.models import JobSpec, RunState, TaskTemplate
from tests.dockerutil import remove_labelled

IMAGE = "taskd-test:latest"
CONCURRENCY = 4
RAW_LABEL = "taskd-bench"
TARGET_ADDED_MS = 25.0
TARGET_CALLS = 6.0
BOOTSTRAP = 2000


@contextlib.contextmanager
def counting_calls() -> Iterator[Counter[tuple[int, str]]]:
    """Count the HTTP requests of every aiodocker client, by ``id()`` of the client and
    endpoint ("POST containers/{id}/wait")."""
    calls: Counter[tuple[int, str]] = Counter()
    original = aiodocker.Docker._do_query

    async def counted(client: aiodocker.Docker, *args, **kwargs):  # the benchmark's probe
        path = str(kwargs.get("path", args[0] if args else ""))
        parts = path.split("/")
        if len(parts) > 1 and parts[0] == "containers" and parts[1] not in ("create", "json"):
            parts[1] = "{id}"
        calls[id(client), f"{kwargs.get('method', 'GET')} {'/'.join(parts)}"] += 1
        return await original(client, *args, **kwargs)

    aiodocker.Docker._do_query = counted  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        aiodocker.Docker._do_query = original  # type: ignore[method-assign]


async def raw(
    n: int, concurrency: int, mark: str, calls: Counter[str] | None = None
) -> tuple[float, list[float]]:
    """Containers/s and per-container seconds of create/start/wait/remove; ``calls`` adds up
    the client's requests by endpoint."""
    todo = iter(range(n))
    spans: list[float] = []
    config = {
        "Image": IMAGE,
        "Cmd": ["true"],
        "Labels": {RAW_LABEL: mark},
        "HostConfig": {"NetworkMode": "none"},
    }
    with counting_calls() as counts:
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
            rate = n / (time.perf_counter() - t0)
            if calls is not None:
                calls.update({k: v for (c, k), v in counts.items() if c == id(docker)})
    return rate, spans


async def through_taskd(
    db: Path,
    n: int,
    concurrency: int,
    runner_name: str = "docker",
    seconds_per_job: float = 5,
    remove: Callable[[str], None] = remove_labelled,
    calls: Counter[str] | None = None,
) -> tuple[float, list[float]]:
    """n ``true`` jobs on ``runner_name`` through taskd's engine: the rate, and each job's time
    from its attempt's creation to the removal of what ran it. Also serves the swarm row.

    ``calls`` adds up the docker runner's Engine API requests by endpoint, those of taskd's
    start-up as "start-up: <endpoint>"."""
    with counting_calls() as counts:
        svc = await Services.open(settings(db, max_parallel=concurrency))
        runner = svc.engine.runners[runner_name]
        try:
            await svc.engine.start()
            await svc.scheduler.start()
            client = id(getattr(runner, "_docker", None))
            startup = {k: v for (c, k), v in counts.items() if c == client}
            rate, spans = await _batch(svc, runner, n, runner_name, seconds_per_job)
            if calls is not None:
                client = id(getattr(runner, "_docker", None))  # made on first use
                for (c, k), v in counts.items():
                    if c == client and v > startup.get(k, 0):
                        calls[k] += v - startup.get(k, 0)
                calls.update({f"start-up: {k}": v for k, v in startup.items()})
            return rate, spans
        finally:
            await close_services(svc)
            remove(f"taskd.instance={svc.instance}")  # only this store's containers or services


async def _batch(
    svc: Services, runner, n: int, runner_name: str, seconds_per_job: float
) -> tuple[float, list[float]]:
    removed: dict[str, int] = {}  # attempt uuid -> when its container/service was removed (ns)
    all_removed = asyncio.Event()
    cleanup = runner.cleanup

    async def noting_cleanup(ctx, started):  # the benchmark's probe, not taskd's code
        await cleanup(ctx, started)
        removed[ctx.attempt_uuid] = time.time_ns()
        if len(removed) == n:
            all_removed.set()

    runner.cleanup = noting_cleanup
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


@dataclass
class Round:
    """One raw batch and one taskd batch, run back to back."""

    raw: list[float] = field(default_factory=list)
    taskd: list[float] = field(default_factory=list)
    raw_seconds: float = 0.0
    taskd_seconds: float = 0.0


def added_ms(rounds: list[Round]) -> float:
    """Pooled median of taskd's spans minus that of the raw spans, in ms."""
    taskd = [s for r in rounds for s in r.taskd]
    base = [s for r in rounds for s in r.raw]
    return (pct(taskd, 50) - pct(base, 50)) * 1000


def bootstrap_ci(rounds: list[Round], draws: int = BOOTSTRAP) -> tuple[float, float]:
    """95 % interval of ``added_ms``, drawing whole rounds with replacement."""
    rng = random.Random(18)  # a fixed seed: the same rounds give the same interval
    figures = sorted(added_ms([rng.choice(rounds) for _ in rounds]) for _ in range(draws))
    return figures[int(0.025 * draws)], figures[min(draws - 1, int(0.975 * draws))]


def per_task(calls: Counter[str], n: int) -> float:
    """Calls per task, leaving out the once-per-process ones (start-up, API version)."""
    once = [k for k in calls if k.startswith("start-up: ") or k == "GET version"]
    return sum(v for k, v in calls.items() if k not in once) / n


class SettledRow(Row):
    """A row met only when its whole confidence interval is within the target."""

    @property
    def met(self) -> bool | None:
        low, high = self.detail.get("ci95_ms", (None, None))
        if low is None or self.figure is None or self.target is None:
            return super().met
        if high <= self.target:
            return True
        return False if low > self.target else None  # None: not settled


def measure(batch: int, min_rounds: int, max_rounds: int, tmp: Path) -> dict:
    """Interleaved raw and taskd batches; rounds added while the interval straddles the
    target."""
    mark = secrets.token_hex(4)  # this run's raw containers, and no one else's
    rounds: list[Round] = []
    raw_calls: Counter[str] = Counter()
    taskd_calls: Counter[str] = Counter()
    try:
        asyncio.run(raw(CONCURRENCY, CONCURRENCY, mark))  # warm the engine up
        while len(rounds) < max_rounds:
            r = Round()
            # The batch's own time (first start to last removal), not taskd's set-up.
            for side in ("raw", "taskd") if len(rounds) % 2 == 0 else ("taskd", "raw"):
                if side == "raw":
                    rate, r.raw = asyncio.run(raw(batch, CONCURRENCY, mark, raw_calls))
                    r.raw_seconds = batch / rate
                else:
                    db = tmp / f"docker-{len(rounds)}.db"
                    rate, r.taskd = asyncio.run(
                        through_taskd(db, batch, CONCURRENCY, calls=taskd_calls)
                    )
                    r.taskd_seconds = batch / rate
            rounds.append(r)
            if len(rounds) >= min_rounds:
                low, high = bootstrap_ci(rounds)
                if high <= TARGET_ADDED_MS or low > TARGET_ADDED_MS:
                    break
    finally:
        remove_labelled(f"{RAW_LABEL}={mark}")
    return {"rounds": rounds, "raw_calls": raw_calls, "taskd_calls": taskd_calls}


def run(quick: bool) -> list[Row]:
    batch, min_rounds, max_rounds = (10, 4, 4) if quick else (25, 8, 16)
    why = docker_ready(IMAGE)
    what = f"docker tasks, interleaved batches of {batch} at concurrency {CONCURRENCY}"
    if why:
        return [
            Row("docker_throughput", f"{what}, of raw throughput", None, "%", 80, skipped=why),
            Row("docker_added", f"{what}, added per task p50", None, "ms", 25, "<=", skipped=why),
            Row("docker_calls", f"{what}, API calls per task", None, "", 6, "<=", skipped=why),
        ]
    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        got = measure(batch, min_rounds, max_rounds, Path(tmp))
    rounds: list[Round] = got["rounds"]
    n = batch * len(rounds)
    taskd = [s for r in rounds for s in r.taskd]
    base = [s for r in rounds for s in r.raw]
    # Throughput over the batches' own times (each batch starts and drains its own work).
    rate = n / sum(r.taskd_seconds for r in rounds)
    base_rate = n / sum(r.raw_seconds for r in rounds)
    low, high = bootstrap_ci(rounds)
    detail = {
        "containers_per_side": n,
        "rounds": len(rounds),
        "batch": batch,
        "concurrency": CONCURRENCY,
        "taskd_per_s": rate,
        "raw_per_s": base_rate,
        "taskd_p50_ms": pct(taskd, 50) * 1000,
        "raw_p50_ms": pct(base, 50) * 1000,
        "taskd_p99_ms": pct(taskd, 99) * 1000,
        "raw_p99_ms": pct(base, 99) * 1000,
        "ci95_ms": (low, high),
        "round_added_ms": [added_ms([r]) for r in rounds],
        "taskd_calls_per_task": per_task(got["taskd_calls"], n),
        "raw_calls_per_container": per_task(got["raw_calls"], n),
    }
    calls_detail = {
        "taskd_calls": dict(got["taskd_calls"]),
        "raw_calls": dict(got["raw_calls"]),
        "tasks": n,
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
        SettledRow(
            "docker_added",
            f"{what}, added per task p50",
            added_ms(rounds),
            "ms",
            TARGET_ADDED_MS,
            "<=",
            baseline=pct(base, 50) * 1000,
            baseline_unit="ms",
            baseline_what="raw container lifecycle p50",
            detail=detail,
            # A difference of two medians of ~0.5 s each: noisy on a busy engine.
            bound=250,
        ),
        Row(
            "docker_calls",
            f"{what}, API calls per task",
            detail["taskd_calls_per_task"],
            "",
            TARGET_CALLS,
            "<=",
            baseline=detail["raw_calls_per_container"],
            baseline_unit="calls",
            baseline_what="raw create/start/wait/remove, per container",
            detail=calls_detail,
        ),
    ]
