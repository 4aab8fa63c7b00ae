"""Dispatch and the life of one attempt: what the engine starts, watches and decides.

Ready tasks wait in one FIFO for capacity; an attempt is committed before its runner starts
it, its output streams into the store while it runs, and its end is decided on the graph and
committed before the container is removed. Part of ``Engine`` (``taskd.engine.engine``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid as uuidlib
from typing import Any

from taskd.auth import new_task_token
from taskd.engine.graph import LiveAttempt, RunNode, TaskNode
from taskd.engine.repair import Ended, Generated
from taskd.errors import TaskdError
from taskd.log import get_logger
from taskd.models import (
    AttemptState,
    Outcome,
    RetryPolicy,
    RunState,
    TaskState,
    after_attempt,
    attempt_succeeded,
)
from taskd.output import OutputWriter
from taskd.runners.base import AttemptContext, Runner, Started, StartFailed
from taskd.secrets import MissingSecret, refers, resolve
from taskd.shell_conventions import shell_conventions
from taskd.store import output as output_q
from taskd.store import runs as q

log = get_logger("taskd.engine")

# Many tasks ready at once are started in chunks that double in size: the first few are
# committed and started within milliseconds, and each next chunk is prepared on the loop while
# the writer thread commits the one before (one huge batch would hold every start until all of
# it was prepared and written; small fixed chunks would pay a commit each).
FIRST_CHUNK = 8
MAX_CHUNK = 512


class Attempts:
    """The engine's dispatcher and attempt lifecycle (mixed into ``Engine``)."""

    # -- dispatch ---------------------------------------------------------------------------

    def _dispatch_soon(self) -> None:
        if self._dispatch_handle is None and not self._closing:
            loop = asyncio.get_running_loop()
            self._dispatch_handle = loop.call_soon(self._dispatch)

    _chunk = FIRST_CHUNK  # how many the next dispatch may start
    _stalled = False  # the last fill stopped at a task whose pool has no free slot
    _starts: q.Changes | None = None  # attempts' starts of this turn of the loop, not yet sent
    _starts_written: asyncio.Future[Any]

    def _dispatch(self) -> None:
        self._dispatch_handle = None
        limit = self._chunk
        ch = q.Changes(self.clock.now_ns())
        starting = self._fill(ch, limit)
        if starting:
            self.spawn(self._launch(ch, starting), "launch")
        if len(starting) >= limit and self.ready and not self.capacity.full:
            self._chunk = min(2 * limit, MAX_CHUNK)  # the rest on the next turn of the loop
            self._dispatch_soon()
        else:
            self._chunk = FIRST_CHUNK

    def _fill(self, ch: q.Changes, limit: int, look_ahead: bool = True) -> list[LiveAttempt]:
        """Begin up to ``limit`` ready tasks that fit, in ``ch``; they start once it is stored.

        Without ``look_ahead`` it stops at the first task that cannot start now, rather than
        looking behind it for one that could (which ``_dispatch`` does).
        """
        self._stalled = False
        starting: list[LiveAttempt] = []
        passed: list[TaskNode] = []
        reserved = None  # the job that waited too long: what others must leave room for
        clock = self.clock.time()
        while self.ready and not self.capacity.full and len(passed) < 256 and len(starting) < limit:
            task = self.ready.popleft()
            if task.state is not TaskState.READY or task.live is not None:
                continue  # a stale entry: killed or started since it was queued
            if not getattr(self.runners.get(task.job.runner), "available", True):
                self.held.setdefault(task.job.runner, []).append(task)
                continue
            if task.run.id in self._repairing:
                passed.append(task)  # not now; if its run is replaced, the entry goes with it
                continue
            if not look_ahead and self.capacity.no_slot(task.job):
                self._stalled = True  # nothing of its pool can start: no need to look further
                passed.append(task)
                break
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
        return starting

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
                          cpuset=cpuset, created_ns=ch.at)  # fmt: skip
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
            self._unbegin(starting)
            return
        self._watch_all(starting, ids)

    def _unbegin(self, starting: list[LiveAttempt]) -> None:
        # Never written, so never started: give back what they held; the repair of their
        # runs queues the tasks again.
        for att in starting:
            self.capacity.give(att.task.job, att.cpuset)
            self.live.pop(att.uuid, None)
            if att.task.live is att:
                att.task.live = None

    def _watch_all(self, starting: list[LiveAttempt], ids: list[int]) -> None:
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
        at = self.clock.now_ns()
        cols = dict(state=AttemptState.RUNNING, started_at=at, container_id=started.container_id,
                    pid=started.pid, pid_start=started.pid_start, host=started.host)  # fmt: skip
        # Written while the job runs: a short job's end need not wait for it first. Its end is
        # written after it (the wait below), so the store never sees them out of order.
        recorded = self._note_start(att.id, cols)
        self._arm_deadline(att, att.task.max_runtime)
        if att.stop_as is not None:  # a kill arrived while it was starting
            self.spawn(runner.kill(att.ctx, started, self.settings.kill_grace), "kill")
        try:
            return await runner.wait(att.ctx, started, sink)
        finally:
            try:
                await asyncio.shield(recorded)  # shared with other starts: never cancel it
            except Exception as exc:
                # The job ran all the same; what was not written goes in with its end.
                log.warning("could not record an attempt's start", attempt=att.uuid,
                            error=str(exc))  # fmt: skip
                att.unwritten = cols

    def _note_start(self, attempt_id: int, cols: dict[str, Any]) -> asyncio.Future[Any]:
        """Write an attempt's start with every other start of this turn of the loop, in one
        batch: a burst of 1,000 starts is one write, not 1,000 queued before the next chunk."""
        if self._starts is None:
            self._starts = q.Changes(self.clock.now_ns())
            self._starts_written = asyncio.ensure_future(self._write_starts(self._starts))
        self._starts.attempt(attempt_id, **cols)
        return self._starts_written

    async def _write_starts(self, ch: q.Changes) -> None:
        self._starts = None  # from now on (the next turn), starts go in a new batch
        await self._commit(ch)

    async def _adopt(
        self, runner: Runner, att: LiveAttempt, sink: OutputWriter, adopt: dict[str, Any]
    ) -> Outcome:
        started = att.started or Started()
        max_runtime = att.task.max_runtime
        if max_runtime and adopt.get("started_at"):
            max_runtime = max(0.0, max_runtime - (self.clock.now_ns() - adopt["started_at"]) / 1e9)
        self._arm_deadline(att, max_runtime)
        return await runner.adopt(att.ctx, started, sink, adopt["seen"])

    def _arm_deadline(self, att: LiveAttempt, seconds: float | None) -> None:
        if seconds:
            reason = f"ran longer than its limit of {att.task.max_runtime:g} seconds"
            att.deadline = self.clock.call_later(  # type: ignore[assignment]
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

        now = self.clock.now_ns()
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
        # What its end made ready (or the slot it freed) starts in the same transaction: a
        # chain's next task waits for one commit, not two. Atomic, so a child is never
        # stored as started while its parent's end is not.
        starting = [] if self._closing else self._fill(ch, FIRST_CHUNK, look_ahead=False)
        # Whether a dispatch must look behind the queue's head for more (the slot it freed went
        # unused, or more may fit); a busy queue is not scanned again at each end.
        more = not (starting and self._stalled and len(starting) < FIRST_CHUNK)
        try:
            ids = await self._commit(ch)
        except Exception:
            self._unbegin(starting)
            return
        self._ended.pop(att.uuid, None)
        self._watch_all(starting, ids)
        if more:
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
