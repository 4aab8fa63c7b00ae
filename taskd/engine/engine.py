"""The engine: the one loop every API family drives.

Event-driven: a task that ends re-examines only its children; ready tasks wait in one FIFO for
capacity; timers (backoff, max runtime) are loop timers, never polling. Every decision is made
on the in-memory graph synchronously, then written as one batch (``Changes``) before anyone is
told about it. Writes are ordered, so memory and store never disagree about the order of events.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from taskd.engine.attempts import Attempts
from taskd.engine.capacity import Pools
from taskd.engine.clock import Clock
from taskd.engine.commands import Commands
from taskd.engine.graph import (
    LiveAttempt,
    RunNode,
    TaskNode,
    add_tasks,
    link,
    run_from_row,
    task_from_row,
)
from taskd.engine.repair import Ended, repair
from taskd.engine.retention import Retention
from taskd.engine.supervisor import Supervisor
from taskd.errors import BadRequest, NotFound, Unavailable
from taskd.log import get_logger
from taskd.metrics import Metrics
from taskd.models import (
    RUN_TERMINAL,
    AttemptState,
    JobSpec,
    RunState,
    TaskState,
    TaskTemplate,
    check_transition,
    readiness,
    run_result,
    set_default_container_runner,
)
from taskd.output import Followers
from taskd.runners.base import RUNNERS, Runner
from taskd.runners.builtin import load_builtin_runners
from taskd.store import Store
from taskd.store import runs as q

log = get_logger("taskd.engine")

# A generator hook turns a successful generator's stdout into new tasks (Daggy), returning
# the templates and extra (parent, child, required) edges; it raises BadRequest on bad output.
GeneratorHook = Callable[[TaskNode, str], tuple[list[TaskTemplate], list[tuple[str, str, bool]]]]

# A job that waited this long for capacity while smaller ones went first reserves what it needs:
# nothing else starts unless it leaves room for it (a stream of small jobs must not starve it).
FAIR_WAIT = 30.0
# A run of more tasks than this has its graph built in a thread (a few milliseconds' work).
BIG_RUN = 2000


class Engine(Attempts, Commands):
    """Owns active runs, capacity, live attempts and the runners."""

    def __init__(
        self, settings: Any, store: Store, instance: str, clock: Clock | None = None
    ) -> None:
        self.settings = settings
        # Every timer and time stamp goes through it, so tests can step time (FakeClock).
        self.clock = clock or Clock()
        self.store = store
        self.instance = instance
        self.runners: dict[str, Runner] = {
            name: cls(settings, instance) for name, cls in RUNNERS.items()
        }
        set_default_container_runner(getattr(settings, "container_runner", "docker"))
        self.capacity = Pools(settings.max_parallel, settings.cpus, settings.memory_mb)
        for name, runner in self.runners.items():
            if (pool := getattr(runner, "pool", None)) is not None:
                self.capacity.pools[name] = pool  # jobs it runs elsewhere count there
        self.metrics = Metrics()
        self.supervisor = Supervisor(self.metrics.registry)
        self.followers = Followers()
        self.runs: dict[int, RunNode] = {}
        self.ready: deque[TaskNode] = deque()
        self.live: dict[str, LiveAttempt] = {}
        self.run_finished: list[Callable[[RunNode], None]] = []
        self.run_started: list[Callable[[RunNode], None]] = []  # its first attempt was written
        # Writes that belong in the transaction ending a run (db, run_id, at): the
        # notification outbox, so a message is queued exactly when the run's end is stored.
        self.run_end_writes: list[Callable[[Any, int, int], Any]] = []
        self.secret_values: dict[str, str] = {}  # what {"secret": NAME} in a job env resolves to
        # Told of every committed batch (the dashboard's live views follow runs through it).
        self.committed: list[Callable[[q.Changes], None]] = []
        self.generator_hook: GeneratorHook | None = None
        self._next_task_id = 0
        self._dispatch_handle: asyncio.Handle | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._closing = False
        # Ready tasks whose runner's backend is unreachable, per runner, in queue order.
        self.held: dict[str, list[TaskNode]] = {}
        for name, runner in self.runners.items():
            if hasattr(runner, "health"):
                runner.health.on_up.append(lambda name=name: self._release(name))
        self.metrics.runners = self.runners
        self.metrics.held = self.held
        self.fair_wait = FAIR_WAIT
        # Restarts, kills and repairs of one run take turns (two restarts must not both start
        # the same task). Weak: a lock lives only while someone holds or waits for it.
        self._run_locks: weakref.WeakValueDictionary[int, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        # Runs whose last write failed: no decisions for them until rebuilt from the store.
        self._repairing: set[int] = set()
        # Attempt ends decided in memory and not yet in the store, by attempt uuid.
        self._ended: dict[str, tuple[LiveAttempt, Ended]] = {}
        self._write_failures = 0
        self.writable = asyncio.Event()  # cleared while engine writes fail; repairs wait on it

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load active runs and take over what was running when taskd last stopped."""
        from taskd.engine.recovery import recover

        self._next_task_id = await self.store.read(q.max_task_id)
        for runner in self.runners.values():
            if (open_ := getattr(runner, "open", None)) is not None:
                await open_(self._dispatch_soon)  # e.g. read the swarm's nodes
        await recover(self)
        self._dispatch_soon()
        retention = Retention(self.settings, self.store, lambda: set(self.runs), self.clock.now_ns)
        self.supervisor.spawn("retention", retention.loop)

    async def stop(self) -> None:
        """Stop dispatching; docker jobs keep running (adopted at next start), local ones end."""
        self._closing = True
        await self.supervisor.stop()
        if self._dispatch_handle is not None:
            self._dispatch_handle.cancel()
        for run in self.runs.values():
            for task in run.tasks.values():
                if task.timer is not None:
                    task.timer.cancel()
        local = [a for a in self.live.values() if a.task.job.runner == "local" and a.watcher]
        if local:
            _, pending = await asyncio.wait(
                [a.watcher for a in local], timeout=self.settings.shutdown_grace
            )
            for att in local:
                if att.watcher in pending:
                    self.stop_attempt(att, AttemptState.LOST, "taskd shut down while it ran")
            if pending:
                await asyncio.wait(pending, timeout=self.settings.kill_grace + 2)
        for att in list(self.live.values()):
            if att.watcher is not None and not att.watcher.done():
                att.watcher.cancel()
        tasks = [t for t in self._background if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for runner in self.runners.values():
            await runner.close()

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", task=task.get_name(), exc_info=task.exception())

    def new_task_ids(self, names: Iterable[str]) -> dict[str, int]:
        ids = {}
        for name in names:
            self._next_task_id += 1
            ids[name] = self._next_task_id
        return ids

    # -- submitting and restarting runs -----------------------------------------------------

    def refusal(self, templates: Iterable[TaskTemplate]) -> list[str]:
        """Why tasks could never run on this host (asks for more than it has)."""
        errors = []
        # The answer depends only on these; a big DAG repeats a few combinations.
        known: dict[tuple[str, float, int, bool], str | None] = {}
        for t in templates:
            job = t.job
            key = (job.runner, job.cpus, job.memory_mb, job.pin_cores)
            if key in known:
                why = known[key]
            else:
                why = known[key] = self._refusal(job)
            if why:
                errors.append(f"task {t.name}: {why}")
        return errors

    def _refusal(self, job: JobSpec) -> str | None:
        why = self.capacity.refusal(job)
        broken = RUNNER_IMPORT_ERRORS.get(job.runner)
        if why is None and broken is not None:
            why = f"the {job.runner} runner is unavailable ({broken})"
        elif why is None and job.runner not in self.runners:
            why = f"no runner named {job.runner!r}"
        return why

    async def submit(
        self, plan: q.RunPlan, also: Callable[[Any, int], Any] | None = None
    ) -> RunNode:
        """Store a new run (and ``also(db, run_id)`` in the same transaction); start it."""
        if self._closing:
            raise Unavailable("taskd is shutting down")
        errors = self.refusal(plan.tasks)
        if errors:
            raise BadRequest("the run cannot be placed on this host", details=errors)
        ids = self.new_task_ids(t.name for t in plan.tasks)
        at = self.clock.now_ns()
        written = self.store.write(insert_run_and, plan, ids, at, also)
        run = RunNode(
            id=0, uuid=plan.uuid, kind=plan.kind, name=plan.name, state=RunState.QUEUED,
            kill_requested=False, trigger=plan.trigger, params=plan.params, extra=plan.extra,
        )  # fmt: skip
        if len(plan.tasks) > BIG_RUN:
            # Its graph is built in a thread while the store writes it, so the event loop
            # goes on meanwhile; nobody sees it (nothing starts) before it is stored.
            nodes = await asyncio.to_thread(add_tasks, run, plan.tasks, ids, [])
            run.id = await written
            self.runs[run.id] = run
            self.ready.extend(n for n in nodes if n.state is TaskState.READY)
        else:
            run.id = await written
            self.runs[run.id] = run
            self._graft(run, plan.tasks, ids, [])
        ch = q.Changes(at)
        self._maybe_finish(run, ch)
        if ch:
            # The run itself is stored: a failed end is mended by the repair, not the caller.
            with contextlib.suppress(Exception):
                await self._commit(ch)
        self._dispatch_soon()
        return run

    def _graft(
        self,
        run: RunNode,
        templates: list[TaskTemplate],
        ids: dict[str, int],
        edges: list[tuple[str, str, bool]],
    ) -> list[TaskNode]:
        nodes = add_tasks(run, templates, ids, edges)
        self.ready.extend(n for n in nodes if n.state is TaskState.READY)
        return nodes

    async def load(self, run_id: int) -> RunNode:
        """The run, from memory if active, else loaded from the store (for restarts)."""
        run = self.runs.get(run_id)
        if run is not None:
            return run
        loaded = await self.store.read(q.load_runs, [run_id])
        if not loaded:
            raise NotFound(f"no run {run_id}")
        return self.build(loaded[0])

    def build(self, loaded: q.LoadedRun) -> RunNode:
        run = run_from_row(loaded.run)
        for row in loaded.tasks:
            run.add(task_from_row(run, row))
        for row in loaded.edges:
            link(run.tasks[row["parent"]], run.tasks[row["child"]], bool(row["required"]))
        return run

    # -- state changes ----------------------------------------------------------------------

    def _set(self, task: TaskNode, state: TaskState, ch: q.Changes, **cols: Any) -> None:
        """Move a task (and, through the graph, whatever that decides) to a new state."""
        work = [(task, state, cols)]
        while work:
            node, new, extra = work.pop()
            if node.state is new:
                continue
            check_transition(node.state, new)
            was_terminal = node.terminal
            node.state = new
            ch.task(node.run.id, node.id, state=new, **extra)
            if node.timer is not None and new is not TaskState.RETRY_WAIT:
                node.timer.cancel()
                node.timer = None
            if new is TaskState.READY:
                self.ready.append(node)
            elif new is TaskState.RETRY_WAIT and node.retry_at is not None:
                self._arm_retry(node)
            if node.terminal and not was_terminal:
                node.run.unfinished -= 1
                failed = node.state is not TaskState.SUCCEEDED
                for child, required in node.children:
                    child.blocking -= 1
                    if child.state is not TaskState.WAITING:
                        continue
                    if required and failed:
                        work.append((child, TaskState.UPSTREAM_FAILED, {}))
                    elif child.blocking == 0:
                        # Only now look at all parents: a fan-in of n tasks costs O(n), not n².
                        verdict = readiness((p.state, r) for p, r in child.parents)
                        if verdict is not None:
                            work.append((child, verdict, {}))
            elif was_terminal and not node.terminal:
                node.run.unfinished += 1
                for child, _ in node.children:
                    child.blocking += 1
        self._maybe_finish(task.run, ch)

    def _maybe_finish(self, run: RunNode, ch: q.Changes) -> None:
        if run.unfinished or run.state in RUN_TERMINAL:
            return
        final = run_result((t.state for t in run.tasks.values()), run.kill_requested)
        if final is None:
            return
        run.state = final
        ch.run(run.id, state=final, ended_at=ch.at)
        for write in self.run_end_writes:
            ch.also.append(functools.partial(write, run_id=run.id, at=ch.at))

    def _arm_retry(self, task: TaskNode) -> None:
        delay = max(0.0, (task.retry_at or 0) - self.clock.now_ns()) / 1e9
        task.timer = self.clock.call_later(delay, self._retry_due, task)  # type: ignore[assignment]

    def _retry_due(self, task: TaskNode) -> None:
        task.timer = None
        if task.run.id in self._repairing:
            return  # the rebuilt run arms its own timer
        if task.state is TaskState.RETRY_WAIT and not self._closing:
            ch = q.Changes(self.clock.now_ns())
            self._set(task, TaskState.READY, ch, retry_at=None)
            self.spawn(self._commit_quietly(ch), "commit-retry")
            self._dispatch_soon()

    async def _commit(self, ch: q.Changes) -> list[int]:
        """Write a batch; if the store refuses it, the runs it touched are rebuilt from the store.

        Memory already holds the batch's decisions, so a failed write must not leave them
        standing: the affected runs stop taking decisions until ``repair`` has reloaded them.
        """
        try:
            ids = await self.store.write(q.apply, ch)
        except Exception as exc:
            self._write_failed(ch, exc)
            raise
        self._write_failures = 0
        self.writable.set()
        self._committed(ch)
        return ids

    async def _commit_quietly(self, ch: q.Changes) -> None:
        with contextlib.suppress(Exception):  # logged, and mended by the repair
            await self._commit(ch)

    def _committed(self, ch: q.Changes) -> None:
        for observer in self.committed:
            observer(ch)
        for run_id, cols in ch.runs.items():
            state = cols.get("state")
            if state in RUN_TERMINAL:
                run = self.runs.pop(run_id, None)
                if run is not None:
                    run.done.set()
                    self.metrics.run_finished(run)
                    for listener in self.run_finished:
                        listener(run)
            elif state == RunState.RUNNING and run_id in self.runs:
                for listener in self.run_started:
                    listener(self.runs[run_id])

    # -- for recovery (runs rebuilt from the store are decided by the same rules) ------------

    @property
    def closing(self) -> bool:
        """True once the engine is stopping: nothing new may start."""
        return self._closing

    def set_state(self, task: TaskNode, state: TaskState, ch: q.Changes, **cols: Any) -> None:
        """Move a task to a new state in ``ch``, with whatever that decides in the graph."""
        self._set(task, state, ch, **cols)

    def arm_retry(self, task: TaskNode) -> None:
        """Start a task's backoff timer (it is in ``retry_wait``)."""
        self._arm_retry(task)

    def maybe_finish(self, run: RunNode, ch: q.Changes) -> None:
        """End the run in ``ch`` if none of its tasks can change any more."""
        self._maybe_finish(run, ch)

    async def commit(self, ch: q.Changes) -> list[int]:
        """Write a batch of decisions, then announce it."""
        return await self._commit(ch)

    # -- failed writes ----------------------------------------------------------------------

    def _write_failed(self, ch: q.Changes, exc: BaseException) -> None:
        runs = set(ch.runs) | {h[0] for h in ch.history} | {g[0] for g in ch.generated}
        runs |= {a["run_id"] for a in ch.new_attempts}
        self._write_failures += 1
        self.writable.clear()
        log.error("a write failed; reloading its runs from the store", runs=sorted(runs),
                  error=str(exc))  # fmt: skip
        for run_id in runs:
            if run_id not in self._repairing and not self._closing:
                self._repairing.add(run_id)
                self.spawn(repair(self, run_id), f"repair-{run_id}")


def insert_run_and(db: Any, plan: q.RunPlan, ids: dict[str, int], at: int, also: Any) -> int:
    run_id = q.insert_run(db, plan, ids, at)
    if also is not None:
        also(db, run_id)
    return run_id


# Each built-in backend registers itself; one that fails to import is reported at start and
# leaves the others working.
RUNNER_IMPORT_ERRORS = load_builtin_runners()
