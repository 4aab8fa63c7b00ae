"""A fake runner on a fake clock, and the engine around them, for deterministic engine tests.

The fake runner plays scripted jobs: an exit code after a duration in fake seconds, a start
that fails, lines of output, a job that runs until killed or that ignores the stop signal for
the whole grace. It lives with the tests and is handed to one engine's runners by hand: it is
never in the registry, so no API user can ever pick it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from taskd.config import Settings
from taskd.engine.clock import FakeClock
from taskd.engine.drain import advance, drain
from taskd.engine.engine import Engine
from taskd.models import AttemptState, JobSpec, Outcome, RetryPolicy, RunKind, TaskTemplate
from taskd.runners.base import (
    AttemptContext,
    EngineUnavailable,
    OutputSink,
    Runner,
    Started,
    StartFailed,
)
from taskd.store import Store
from taskd.store.runs import RunPlan

KILLED_EXIT = 143  # what a shell reports for a job ended by SIGTERM


@dataclass(frozen=True)
class Job:
    """One scripted attempt."""

    exit_code: int = 0
    duration: float = 0.0  # fake seconds
    forever: bool = False  # runs until killed
    start_error: str | None = None
    blameless: bool = False  # the start error is a backend outage, not the job's fault
    output: tuple[tuple[str, str], ...] = ()  # (stream, line) printed at once
    ignore_term: bool = False  # a kill takes the whole grace before it ends the job


@dataclass(eq=False)
class Played:
    """What happened to one attempt the fake runner was asked to start."""

    task: str
    number: int
    run_id: int
    job: Job
    started_at: float  # monotonic fake time
    ended_at: float | None = None
    killed_at: float | None = None  # when the kill was asked for
    killed: asyncio.Event = field(default_factory=asyncio.Event)


class FakeRunner(Runner):
    """Plays scripted jobs on a fake clock; per task name, one ``Job`` per attempt."""

    name = "fake"

    def __init__(self, clock: FakeClock, settings: Settings, instance: str = "test") -> None:
        super().__init__(settings, instance)
        self.clock = clock
        self.scripts: dict[str, list[Job]] = {}
        self.default = Job()
        self.played: list[Played] = []
        self.failed_starts: list[tuple[str, int, float]] = []
        self.running: dict[str, Played] = {}

    def script(self, task: str, *jobs: Job) -> None:
        """The jobs of a task's attempts, in order; the last one repeats."""
        self.scripts[task] = list(jobs)

    def of(self, task: str) -> list[Played]:
        return [p for p in self.played if p.task == task]

    def _job(self, ctx: AttemptContext) -> Job:
        jobs = self.scripts.get(ctx.task_name)
        if not jobs:
            return self.default
        return jobs[min(ctx.number, len(jobs)) - 1]

    async def start(self, ctx: AttemptContext) -> Started:
        job = self._job(ctx)
        if job.start_error is not None:
            self.failed_starts.append((ctx.task_name, ctx.number, self.clock.time()))
            raise (EngineUnavailable if job.blameless else StartFailed)(job.start_error)
        played = Played(ctx.task_name, ctx.number, ctx.run_id, job, self.clock.time())
        self.played.append(played)
        self.running[ctx.attempt_uuid] = played
        return Started(pid=len(self.played), host="fake")

    async def wait(
        self,
        ctx: AttemptContext,
        started: Started,
        sink: OutputSink,
        skip: Mapping[str, int] | None = None,
    ) -> Outcome:
        played = self.running[ctx.attempt_uuid]
        if not skip:
            for stream, line in played.job.output:
                sink.write(stream, f"{line}\n".encode())
        if played.job.forever:
            await played.killed.wait()
        else:
            # Adopted after a restart, it runs only what is left of its duration.
            left = played.started_at + played.job.duration - self.clock.time()
            await self.clock.wait(played.killed, max(0.0, left))
        played.ended_at = self.clock.time()
        del self.running[ctx.attempt_uuid]
        code = KILLED_EXIT if played.killed.is_set() else played.job.exit_code
        return Outcome(AttemptState.EXITED, exit_code=code)

    async def kill(self, ctx: AttemptContext, started: Started, grace: float) -> None:
        played = self.running.get(ctx.attempt_uuid)
        if played is None or played.killed_at is not None:
            return
        played.killed_at = self.clock.time()
        if played.job.ignore_term:
            await self.clock.sleep(grace)
        played.killed.set()

    async def adopt(
        self,
        ctx: AttemptContext,
        started: Started,
        sink: OutputSink,
        skip: Mapping[str, int],
    ) -> Outcome:
        if ctx.attempt_uuid not in self.running:
            return Outcome(AttemptState.LOST, reason="the job is gone")
        return await self.wait(ctx, started, sink, skip)


def job(**kw) -> JobSpec:
    return JobSpec(runner="fake", **kw)


def task(
    name: str,
    *parents: str | tuple[str, bool],
    attempts: int = 1,
    backoff: float = 0.0,
    exponent: float = 1.0,
    max_runtime: float | None = None,
    **spec,
) -> TaskTemplate:
    """A task on the fake runner; a parent is a name (required) or (name, required)."""
    return TaskTemplate(
        name,
        job(**spec),
        retry=RetryPolicy(attempts, backoff, exponent),
        max_runtime=max_runtime,
        parents=[p if isinstance(p, tuple) else (p, True) for p in parents],
    )


class World:
    """A real store in a temporary directory, an engine on a fake clock, a fake runner."""

    def __init__(self, settings: Settings, start: datetime) -> None:
        self.settings = settings
        self.clock = FakeClock(start)
        self.store: Store = None  # type: ignore[assignment]
        self.engine: Engine = None  # type: ignore[assignment]
        self.runner: FakeRunner = None  # type: ignore[assignment]
        self._submitted = 0

    async def open(self, **overrides) -> World:
        if overrides:
            self.settings = dataclasses.replace(self.settings, **overrides)
        self.store = await Store.open(self.settings.db)
        await self.start_engine()
        return self

    async def start_engine(self) -> None:
        """A new engine on the same store and clock (a restart of taskd); the runner's jobs
        live on, like containers do."""
        self.engine = Engine(self.settings, self.store, "test", self.clock)
        if self.runner is None:
            self.runner = FakeRunner(self.clock, self.settings)
        # The fake stands in for every backend of this engine only; the registry is untouched.
        self.engine.runners.clear()
        self.engine.runners.update(fake=self.runner, local=self.runner)
        await self.engine.start()

    async def close(self) -> None:
        await self.engine.stop()
        await self.store.close()

    async def submit(self, *tasks: TaskTemplate, kind: str = RunKind.DAG, name: str = "r"):
        self._submitted += 1
        plan = RunPlan(kind=kind, name=name, trigger="api", uuid=f"run-{self._submitted}",
                       tasks=list(tasks))  # fmt: skip
        return await self.engine.submit(plan)

    async def drain(self, **kw) -> None:
        await drain(self.engine, **kw)

    async def advance(self, seconds: float) -> None:
        await advance(self.engine, seconds)

    async def rows(self, sql: str, *args) -> list[dict]:
        return await self.store.read(lambda db: [dict(r) for r in db.execute(sql, args)])

    async def task_states(self, run_id: int) -> dict[str, str]:
        rows = await self.rows("SELECT name, state FROM tasks WHERE run_id = ?", run_id)
        return {r["name"]: r["state"] for r in rows}

    async def run_state(self, run_id: int) -> str:
        return (await self.rows("SELECT state FROM runs WHERE id = ?", run_id))[0]["state"]

    async def attempts(self, run_id: int, name: str) -> list[dict]:
        return await self.rows(
            "SELECT a.* FROM attempts a JOIN tasks t ON t.id = a.task_id"
            " WHERE t.run_id = ? AND t.name = ? ORDER BY a.number",
            run_id,
            name,
        )


MONDAY = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@contextlib.contextmanager
def memory_dir(fallback: Path) -> Iterator[Path]:
    """A directory in RAM when the system has one (tmpfs), else ``fallback``.

    The store there is the same real SQLite file with the same commits; only its fsyncs cost
    nothing, which keeps a test of dozens of commits within milliseconds on a busy disk.
    """
    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield fallback
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="taskd-test-") as d:
        yield Path(d)


def starts(world: World, name: str) -> list[float]:
    """When the fake runner started each attempt of a task (monotonic fake seconds)."""
    return [p.started_at for p in world.runner.of(name)]
