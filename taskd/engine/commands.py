"""Restarts and kills of runs and tasks, and a task's report of its own result.

These are what the API families ask of the engine; restarts, kills and repairs of one run take
turns on that run's lock. Part of ``Engine`` (``taskd.engine.engine``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from taskd.engine.graph import RunNode, TaskNode
from taskd.errors import Conflict, StoreError
from taskd.models import (
    RUN_TERMINAL,
    TASK_PENDING,
    TASK_UNSUCCESSFUL,
    AttemptState,
    RetryPolicy,
    RunState,
    TaskState,
    readiness,
)
from taskd.store import runs as q


class Commands:
    """Restart, kill and report (mixed into ``Engine``)."""

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
        ch = q.Changes(self.clock.now_ns())
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

    # -- commands from the API families -----------------------------------------------------

    async def kill_run(self, run_id: int, reason: str = "the run was killed") -> RunNode | None:
        """Stop every running attempt of a run and start nothing new. None if not active."""
        run = self.runs.get(run_id)
        if run is None or run.state in RUN_TERMINAL:
            # An ended run stays here until its end is written: it is not killed by a late kill.
            return None
        self._check_writable(run_id)
        ch = q.Changes(self.clock.now_ns())
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
        ch = q.Changes(self.clock.now_ns())
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
