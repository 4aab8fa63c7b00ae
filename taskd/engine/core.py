"""The engine: the one loop every API family drives.

Event-driven: a task that ends re-examines only its children; ready tasks wait in one FIFO for
capacity; timers (backoff, max runtime) are loop timers, never polling. Every decision is made
on the in-memory graph synchronously, then written as one batch (``Changes``) before anyone is
told about it. Writes are ordered, so memory and store never disagree about the order of events.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import uuid as uuidlib
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog

from taskd.auth import new_task_token
from taskd.engine.capacity import Capacity
from taskd.engine.graph import LiveAttempt, RunNode, TaskNode, link, run_from_row, task_from_row
from taskd.engine.repair import Ended, Generated, repair
from taskd.engine.retention import Retention
from taskd.engine.supervisor import Supervisor
from taskd.errors import BadRequest, Conflict, NotFound, StoreError, TaskdError, Unavailable
from taskd.metrics import Metrics
from taskd.models import (
    RUN_TERMINAL,
    TASK_PENDING,
    TASK_UNSUCCESSFUL,
    AttemptState,
    Outcome,
    RetryPolicy,
    RunState,
    TaskState,
    TaskTemplate,
    after_attempt,
    attempt_succeeded,
    check_transition,
    now_ns,
    readiness,
    run_result,
)
from taskd.output import Followers, OutputWriter
from taskd.runners.base import RUNNERS, AttemptContext, Runner, Started, StartFailed
from taskd.runners.builtin import load_builtin_runners
from taskd.secrets import MissingSecret, refers, resolve
from taskd.shell_conventions import shell_conventions
from taskd.store import Store
from taskd.store import output as output_q
from taskd.store import runs as q

log = structlog.get_logger("taskd.engine")

# A generator hook turns a successful generator's stdout into new tasks (Daggy), returning
# the templates and extra (parent, child, required) edges; it raises BadRequest on bad output.
GeneratorHook = Callable[[TaskNode, str], tuple[list[TaskTemplate], list[tuple[str, str, bool]]]]

# A job that waited this long for capacity while smaller ones went first reserves what it needs:
# nothing else starts unless it leaves room for it (a stream of small jobs must not starve it).
FAIR_WAIT = 30.0


class Engine:
    """Owns active runs, capacity, live attempts and the runners."""

    def __init__(self, settings: Any, store: Store, instance: str) -> None:
        self.settings = settings
        self.store = store
        self.instance = instance
        self.runners: dict[str, Runner] = {
            name: cls(settings, instance) for name, cls in RUNNERS.items()
        }
        self.capacity = Capacity(settings.max_parallel, settings.cpus, settings.memory_mb)
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
        await recover(self)
        self._dispatch_soon()
        retention = Retention(self.settings, self.store, lambda: set(self.runs))
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
        for t in templates:
            why = self.capacity.refusal(t.job)
            broken = RUNNER_IMPORT_ERRORS.get(t.job.runner)
            if why is None and broken is not None:
                why = f"the {t.job.runner} runner is unavailable ({broken})"
            elif why is None and t.job.runner not in self.runners:
                why = f"no runner named {t.job.runner!r}"
            if why:
                errors.append(f"task {t.name}: {why}")
        return errors

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
        at = now_ns()
        run_id = await self.store.write(insert_run_and, plan, ids, at, also)
        run = RunNode(
            id=run_id, uuid=plan.uuid, kind=plan.kind, name=plan.name, state=RunState.QUEUED,
            kill_requested=False, trigger=plan.trigger, params=plan.params, extra=plan.extra,
        )  # fmt: skip
        self.runs[run_id] = run
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
        nodes = []
        for t in templates:
            node = TaskNode(
                id=ids[t.name], run=run, name=t.name, template=t.template or t.name,
                state=q.initial_state(t), job=t.job, retry=t.retry, max_runtime=t.max_runtime,
                explicit_success=t.explicit_success, generator=t.generator, attempts=0,
                retry_at=None, extra=t.extra,
            )  # fmt: skip
            run.add(node)
            nodes.append(node)
        for t in templates:
            for parent, required in t.parents:
                link(run.by_name[parent], run.by_name[t.name], required)
        for parent, child, required in edges:
            link(run.by_name[parent], run.by_name[child], required)
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

    async def restart(
        self, run_id: int, budget: Callable[[TaskNode], int], *, at_once: bool = False
    ) -> RunNode:
        """Give every unsuccessful task of a run ``budget(task)`` more attempts and go on.

        Succeeded tasks are never rerun; history (attempts, state changes) is kept. With
        ``at_once`` the retried tasks lose their backoff, so the extra attempt starts now
        (Sundial's retry); otherwise later failures back off as before (Daggy's resume).
        Restarts of one run take turns, so two at once cannot both start the same task.
        """
        async with self.run_lock(run_id):
            return await self._restart(run_id, budget, at_once)

    def run_lock(self, run_id: int) -> asyncio.Lock:
        """The lock that restarts, kills and repairs of one run take turns on."""
        lock = self._run_locks.get(run_id)
        if lock is None:
            lock = self._run_locks[run_id] = asyncio.Lock()
        return lock

    def _check_writable(self, run_id: int) -> None:
        if run_id in self._repairing:
            raise StoreError("a write for this run failed; it is being reloaded, try again soon")

    async def _restart(
        self, run_id: int, budget: Callable[[TaskNode], int], at_once: bool
    ) -> RunNode:
        self._check_writable(run_id)
        run = await self.load(run_id)
        if run.state is RunState.SUCCEEDED:
            raise Conflict("the run succeeded; there is nothing to retry")
        ch = q.Changes(now_ns())
        if run.kill_requested:
            run.kill_requested = False
            ch.run(run.id, kill_requested=0)
        if run.state in RUN_TERMINAL:
            # Queued again, then running: the history shows both (Daggy lists them).
            ch.history.append((run.id, None, str(RunState.QUEUED)))
            run.state = RunState.RUNNING
            run.done = asyncio.Event()
            ch.run(run.id, state=RunState.RUNNING, ended_at=None)
            self.runs[run.id] = run
        waiting = []
        for task in run.tasks.values():
            if task.state not in TASK_UNSUCCESSFUL:
                continue
            if task.attempts:
                base, exponent = (
                    (0.0, 1.0)
                    if at_once
                    else (task.retry.backoff_base, task.retry.backoff_exponent)
                )
                task.retry = RetryPolicy(task.attempts + budget(task), base, exponent)
                ch.task(run.id, task.id, max_attempts=task.retry.max_attempts,
                        backoff_base=base, backoff_exponent=exponent)  # fmt: skip
            self._set(task, TaskState.WAITING, ch)
            waiting.append(task)
        for task in waiting:
            verdict = readiness((p.state, r) for p, r in task.parents)
            if task.blocking == 0 and verdict is TaskState.READY:
                self._set(task, TaskState.READY, ch)
        await self._commit(ch)
        self._dispatch_soon()
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
        loop = asyncio.get_running_loop()
        delay = max(0.0, (task.retry_at or 0) - now_ns()) / 1e9
        task.timer = loop.call_later(delay, self._retry_due, task)

    def _retry_due(self, task: TaskNode) -> None:
        task.timer = None
        if task.run.id in self._repairing:
            return  # the rebuilt run arms its own timer
        if task.state is TaskState.RETRY_WAIT and not self._closing:
            ch = q.Changes(now_ns())
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

    # -- dispatch ---------------------------------------------------------------------------

    def _dispatch_soon(self) -> None:
        if self._dispatch_handle is None and not self._closing:
            loop = asyncio.get_running_loop()
            self._dispatch_handle = loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._dispatch_handle = None
        ch = q.Changes(now_ns())
        starting: list[LiveAttempt] = []
        passed: list[TaskNode] = []
        reserved = None  # the job that waited too long: what others must leave room for
        clock = asyncio.get_running_loop().time()
        while self.ready and not self.capacity.full and len(passed) < 256:
            task = self.ready.popleft()
            if task.state is not TaskState.READY or task.live is not None:
                continue  # a stale entry: killed or started since it was queued
            if not getattr(self.runners.get(task.job.runner), "available", True):
                self.held.setdefault(task.job.runner, []).append(task)
                continue
            if task.run.id in self._repairing:
                passed.append(task)  # not now; if its run is replaced, the entry goes with it
                continue
            if not self.capacity.fits(task.job, reserved):
                passed.append(task)  # let smaller jobs behind it go first, for a while
                if task.passed_since is None:
                    task.passed_since = clock
                elif reserved is None and clock - task.passed_since >= self.fair_wait:
                    reserved = task.job
                continue
            task.passed_since = None
            starting.append(self._begin(task, ch))
        self.ready.extendleft(reversed(passed))
        self.metrics.queue_depth = len(self.ready)
        if starting:
            self.spawn(self._launch(ch, starting), "launch")

    def _release(self, runner: str) -> None:
        """The runner's backend is back: its held tasks go first, in their old order."""
        held = self.held.pop(runner, [])
        self.ready.extendleft(reversed(held))
        self._dispatch_soon()

    def _begin(self, task: TaskNode, ch: q.Changes) -> LiveAttempt:
        run = task.run
        cpuset = self.capacity.take(task.job)
        attempt_uuid = str(uuidlib.uuid4())
        token, token_hash = new_task_token(attempt_uuid)
        number = task.attempts + 1
        task.attempts = number
        env = {
            "TASKD_URL": self.settings.url,
            "TASKD_RUN_ID": str(run.id),
            "TASKD_TASK_ID": attempt_uuid,
            "TASKD_TASK_NAME": task.name,
            "TASKD_ATTEMPT": str(number),
            "TASKD_TASK_TOKEN": token,
        }
        if run.kind == "process":  # what Sundial's shell executor gives its scripts
            env["SUNDIAL_TASK_PREVIOUS_ATTEMPTS"] = str(number - 1)
        ctx = AttemptContext(
            attempt_uuid=attempt_uuid, run_id=run.id, task_id=task.id, task_name=task.name,
            number=number, job=task.job, env=env, name=container_name(run, task, number),
            cpuset=cpuset,
        )  # fmt: skip
        att = LiveAttempt(id=0, uuid=attempt_uuid, task=task, number=number, ctx=ctx,
                          cpuset=cpuset)  # fmt: skip
        task.live = att
        self.live[attempt_uuid] = att
        self._set(task, TaskState.RUNNING, ch, attempts=number)
        if run.state is RunState.QUEUED:
            run.state = RunState.RUNNING
            ch.run(run.id, state=RunState.RUNNING, started_at=ch.at)
        ch.new_attempts.append({
            "uuid": attempt_uuid, "run_id": run.id, "task_id": task.id, "number": number,
            "state": AttemptState.STARTING, "runner": task.job.runner, "token_hash": token_hash,
            "cpuset": ",".join(map(str, cpuset)) or None,
        })  # fmt: skip
        return att

    async def _launch(self, ch: q.Changes, starting: list[LiveAttempt]) -> None:
        try:
            ids = await self._commit(ch)
        except Exception:
            # Never written, so never started: give back what they held; the repair of their
            # runs queues the tasks again.
            for att in starting:
                self.capacity.give(att.task.job, att.cpuset)
                self.live.pop(att.uuid, None)
                if att.task.live is att:
                    att.task.live = None
            return
        for att, attempt_id in zip(starting, ids, strict=True):
            att.id = attempt_id
            att.watcher = self.spawn(self.watch(att), f"attempt-{att.uuid}")

    # -- one attempt ------------------------------------------------------------------------

    def writer(self, attempt_id: int, **resume: Any) -> OutputWriter:
        s = self.settings
        return OutputWriter(self.store, attempt_id, head=s.log_head_bytes, tail=s.log_tail_bytes,
                            followers=self.followers, **resume)  # fmt: skip

    async def watch(self, att: LiveAttempt, adopt: dict[str, Any] | None = None) -> None:
        """Start (or adopt) an attempt, stream its output, wait for its end, record it."""
        runner = self.runners[att.task.job.runner]
        ctx = att.ctx
        if adopt is not None:
            sink = self.writer(att.id, seen=adopt["seen"], tail_chunks=adopt["tail"])
        else:
            sink = self.writer(att.id)
        sink.lines = shell_conventions(att, self.report)
        try:
            if adopt is not None:
                outcome = await self._adopt(runner, att, sink, adopt)
            else:
                outcome = await self._run(runner, att, sink)
        except asyncio.CancelledError:
            await sink.close()  # shutting down: keep what it printed; the job runs on
            raise
        except Exception as exc:
            log.exception("runner failed", attempt=att.uuid)
            self.metrics.runner_errors.labels(runner.name).inc()
            outcome = Outcome(AttemptState.LOST, reason=f"runner error: {exc}")
        await self._finish(att, outcome, sink)
        if att.started is not None:
            try:
                await runner.cleanup(ctx, att.started)
            except Exception:
                log.exception("cleanup failed", attempt=att.uuid)
                self.metrics.runner_errors.labels(runner.name).inc()

    async def _run(self, runner: Runner, att: LiveAttempt, sink: OutputWriter) -> Outcome:
        if att.stop_as is not None:
            return Outcome(att.stop_as, reason=att.stop_reason)
        if refers(att.ctx.job.env):
            # Values only now, and only in memory: the stored job keeps the reference.
            try:
                env = resolve(att.ctx.job.env, self.secret_values)
            except MissingSecret as exc:
                return Outcome(AttemptState.START_FAILED, reason=str(exc))
            att.ctx = dataclasses.replace(att.ctx, job=dataclasses.replace(att.ctx.job, env=env))
        try:
            started = await runner.start(att.ctx)
        except StartFailed as exc:
            if exc.blameless:  # the backend is unreachable: held, not failed
                return Outcome(AttemptState.LOST, reason=str(exc), blameless=True)
            self.metrics.runner_errors.labels(runner.name).inc()
            return Outcome(AttemptState.START_FAILED, reason=str(exc))
        att.started = started
        at = now_ns()
        ch = q.Changes(at)
        ch.attempt(att.id, state=AttemptState.RUNNING, started_at=at,
                   container_id=started.container_id, pid=started.pid,
                   pid_start=started.pid_start, host=started.host)  # fmt: skip
        try:
            await self._commit(ch)
        except Exception as exc:
            # The job runs all the same; what was not written goes in with its end.
            log.warning("could not record an attempt's start", attempt=att.uuid, error=str(exc))
            att.unwritten = ch.attempts[att.id]
        self._arm_deadline(att, att.task.max_runtime)
        if att.stop_as is not None:  # a kill arrived while it was starting
            self.spawn(runner.kill(att.ctx, started, self.settings.kill_grace), "kill")
        return await runner.wait(att.ctx, started, sink)

    async def _adopt(
        self, runner: Runner, att: LiveAttempt, sink: OutputWriter, adopt: dict[str, Any]
    ) -> Outcome:
        started = att.started or Started()
        max_runtime = att.task.max_runtime
        if max_runtime and adopt.get("started_at"):
            max_runtime = max(0.0, max_runtime - (now_ns() - adopt["started_at"]) / 1e9)
        self._arm_deadline(att, max_runtime)
        return await runner.adopt(att.ctx, started, sink, adopt["seen"])

    def _arm_deadline(self, att: LiveAttempt, seconds: float | None) -> None:
        if seconds:
            loop = asyncio.get_running_loop()
            reason = f"ran longer than its limit of {att.task.max_runtime:g} seconds"
            att.deadline = loop.call_later(
                seconds, self.stop_attempt, att, AttemptState.TIMED_OUT, reason
            )

    def stop_attempt(self, att: LiveAttempt, as_: AttemptState, reason: str) -> None:
        """Have taskd end an attempt (kill, timeout, shutdown); its watcher records it."""
        if att.stop_as is not None:
            return
        att.stop_as = as_
        att.stop_reason = reason
        if att.started is not None:
            runner = self.runners[att.task.job.runner]
            self.spawn(runner.kill(att.ctx, att.started, self.settings.kill_grace), "kill")

    async def _finish(self, att: LiveAttempt, outcome: Outcome, sink: OutputWriter) -> None:
        if att.deadline is not None:
            att.deadline.cancel()
        if att.stop_as is not None and outcome.state in (AttemptState.EXITED, AttemptState.LOST):
            outcome = Outcome(att.stop_as, exit_code=outcome.exit_code, reason=att.stop_reason)
        task = att.task
        await sink.end_of_output()  # a status the task printed last must count
        succeeded = attempt_succeeded(outcome, task.explicit_success, att.reported)
        reason = outcome.reason or failure_reason(outcome, task.explicit_success, att.reported)
        generated: Generated | None = None
        if succeeded and task.generator and self.generator_hook is not None:
            await sink.flush()
            size, kept = sink.offsets.get("stdout", 0), sink.head + sink.tail
            if size > kept:
                # Only the head and tail of a long output are kept: a cut-down document would
                # fail to parse with a confusing message, so say what really went wrong.
                succeeded = False
                reason = (
                    f"generator output rejected: it is {size} bytes and taskd keeps at most"
                    f" {kept} bytes of a task's output, so it cannot be read whole"
                )
        if succeeded and task.generator and self.generator_hook is not None:
            stdout = (await self.store.read(output_q.text_of, [att.id], "stdout"))[att.id]
            try:
                generated = self.generator_hook(task, stdout)
            except TaskdError as exc:
                succeeded, reason = False, f"generator output rejected: {exc.message}"
                for detail in exc.details:
                    sink.note(detail)
            except Exception as exc:  # a bug in the hook must not leave the run hanging
                log.exception("generator hook failed", attempt=att.uuid)
                succeeded, reason = False, f"generator output could not be used: {exc}"
        if reason:
            sink.note(reason)
        await sink.close()
        self.followers.wake(att.id)

        now = now_ns()
        self.capacity.give(task.job, att.cpuset)
        self.live.pop(att.uuid, None)
        att.task.live = None
        self.metrics.attempt_finished(task.job.runner, outcome.state, att, now)
        await self._record_end(att, Ended(outcome, succeeded, reason, generated, now))

    async def _record_end(self, att: LiveAttempt, ended: Ended) -> None:
        """Decide what an attempt's end means for its run and write it.

        Until the store has it, the end is kept: if the write fails, the run is rebuilt from
        the store and the end decided again there, so a task that succeeded is not run again.
        """
        self._ended[att.uuid] = (att, ended)
        if att.task.run.id in self._repairing:
            return  # the repair decides it on the rebuilt run
        ch = q.Changes(ended.at)
        self._decide(att, ended, ch)
        try:
            await self._commit(ch)
        except Exception:
            return
        self._ended.pop(att.uuid, None)
        self._dispatch_soon()

    def _decide(self, att: LiveAttempt, ended: Ended, ch: q.Changes) -> None:
        task, outcome, succeeded, now = att.task, ended.outcome, ended.succeeded, ended.at
        if att.unwritten:
            ch.attempt(att.id, **att.unwritten)  # its start, then its end over it
        ch.attempt(att.id, state=outcome.state, succeeded=int(succeeded),
                   exit_code=outcome.exit_code, reason=ended.reason, ended_at=now)  # fmt: skip
        run = task.run
        if ended.generated is not None:
            templates, edges = ended.generated
            ids = self.new_task_ids(t.name for t in templates)
            ids.update({name: node.id for name, node in run.by_name.items()})
            ch.generated.append((run.id, templates, ids, edges))
            for node in self._graft(run, templates, ids, edges):
                if run.kill_requested:
                    self._set(node, TaskState.KILLED, ch)
        if run.kill_requested and not succeeded:
            state, retry_at = TaskState.KILLED, None
        elif outcome.blameless and not succeeded and outcome.state is AttemptState.LOST:
            # Not the job's fault: one more attempt on top of its budget, without backoff.
            r = task.retry
            task.retry = RetryPolicy(r.max_attempts + 1, r.backoff_base, r.backoff_exponent)
            ch.task(run.id, task.id, max_attempts=task.retry.max_attempts)
            state, retry_at = TaskState.RETRY_WAIT, now
        else:
            state, retry_at = after_attempt(succeeded, outcome, task.attempts, task.retry, now)
        task.retry_at = retry_at
        self._set(task, state, ch, retry_at=retry_at)

    # -- commands from the API families -----------------------------------------------------

    async def kill_run(self, run_id: int, reason: str = "the run was killed") -> RunNode | None:
        """Stop every running attempt of a run and start nothing new. None if not active."""
        run = self.runs.get(run_id)
        if run is None or run.state in RUN_TERMINAL:
            # An ended run stays here until its end is written: it is not killed by a late kill.
            return None
        self._check_writable(run_id)
        ch = q.Changes(now_ns())
        if not run.kill_requested:
            run.kill_requested = True
            ch.run(run.id, kill_requested=1)
        for task in list(run.tasks.values()):
            self._kill_task(task, reason, ch)
        self._maybe_finish(run, ch)
        await self._commit(ch)
        return run

    async def kill_task(self, task: TaskNode, reason: str = "the task was killed") -> None:
        self._check_writable(task.run.id)
        ch = q.Changes(now_ns())
        self._kill_task(task, reason, ch)
        await self._commit(ch)

    def _kill_task(self, task: TaskNode, reason: str, ch: q.Changes) -> None:
        if task.state in TASK_PENDING:
            self._set(task, TaskState.KILLED, ch, retry_at=None)
        elif task.state is TaskState.RUNNING and task.live is not None:
            self.stop_attempt(task.live, AttemptState.KILLED, reason)

    async def report(self, attempt_uuid: str, status: str) -> bool:
        """A task reports its own success or failure; the first report wins."""
        stored = await self.store.write(q.report, attempt_uuid, status)
        att = self.live.get(attempt_uuid)
        if stored and att is not None and att.reported is None:
            att.reported = status
        return stored


def insert_run_and(db: Any, plan: q.RunPlan, ids: dict[str, int], at: int, also: Any) -> int:
    run_id = q.insert_run(db, plan, ids, at)
    if also is not None:
        also(db, run_id)
    return run_id


def container_name(run: RunNode, task: TaskNode, number: int) -> str:
    safe = "".join(c if c.isalnum() or c in "_.-" else "-" for c in task.name)[:80]
    return f"taskd-{run.id}-{safe}-{number}-{run.uuid[:8]}"


def failure_reason(outcome: Outcome, explicit_success: bool, reported: str | None) -> str | None:
    if outcome.state is AttemptState.EXITED:
        if outcome.exit_code != 0:
            return f"exited with status {outcome.exit_code}"
        if reported == "failed":
            return "the task reported failure"
        if explicit_success and reported != "succeeded":
            return "exited 0 but the task did not report success (require_explicit_success)"
        return None
    return {
        AttemptState.KILLED: "killed",
        AttemptState.TIMED_OUT: "timed out",
        AttemptState.LOST: "lost",
        AttemptState.START_FAILED: "could not start",
    }.get(outcome.state)


# Each built-in backend registers itself; one that fails to import is reported at start and
# leaves the others working.
RUNNER_IMPORT_ERRORS = load_builtin_runners()
