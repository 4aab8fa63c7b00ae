"""Mending memory after a failed write: the store is the truth, so the run is reloaded from it.

When the store refuses a batch of decisions (disk full, I/O error, a key clash), memory is ahead
of the store. The runs the batch touched stop taking decisions; once the store takes writes
again each is rebuilt from what the store holds, like recovery after a crash, except that its
attempts are still being watched here: they are handed to the rebuilt tasks, and attempt ends
that were decided but never written are decided again on the rebuilt run.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskd.engine.graph import LiveAttempt, RunNode, TaskNode
from taskd.engine.recovery import adopt_attempt
from taskd.log import get_logger
from taskd.models import RUN_TERMINAL, Outcome, RunState, TaskState, TaskTemplate
from taskd.store import output as output_q
from taskd.store import runs as q

if TYPE_CHECKING:
    from taskd.engine.engine import Engine

log = get_logger("taskd.engine")

# A run is rebuilt first after REPAIR_FIRST seconds, then backing off up to REPAIR_MAX while
# the store still refuses writes.
REPAIR_FIRST = 0.25
REPAIR_MAX = 10.0

Generated = tuple[list[TaskTemplate], list[tuple[str, str, bool]]]


@dataclass
class Ended:
    """What an attempt's end decided, kept until the store has taken it."""

    outcome: Outcome
    succeeded: bool
    reason: str | None
    generated: Generated | None
    at: int


async def repair(engine: Engine, run_id: int) -> None:
    """Rebuild a run from the store once it takes writes again, and go on from there."""
    delay = min(REPAIR_MAX, REPAIR_FIRST * 2 ** min(engine._write_failures - 1, 8))
    while not engine._closing:
        # Sooner if another write of the engine went through: the store takes writes again.
        await engine.clock.wait(engine.writable, delay)
        delay = min(REPAIR_MAX, delay * 2)
        try:
            async with engine.run_lock(run_id):
                await rebuild(engine, run_id)
        except Exception as exc:  # the store still refuses writes: later
            engine.writable.clear()
            log.warning("could not reload a run yet", run=run_id, error=str(exc))
            continue
        break
    # Attempts that ended while the rebuilt run was being written are recorded now.
    for att, ended in list(engine._ended.values()):
        if att.task.run.id == run_id and att.task.run is engine.runs.get(run_id):
            engine.spawn(engine._record_end(att, ended), f"end-{att.uuid}")
    engine._dispatch_soon()


async def rebuild(engine: Engine, run_id: int) -> None:
    """Replace a run's memory with what the store holds, then redo what was not written.

    Attempts still running keep their watchers; ends that were decided but never written
    are decided again on the rebuilt run.
    """
    # Read on the writer: queued after every write asked for so far, so it sees them all.
    loaded = await engine.store.write(q.load_runs, [run_id])
    old = engine.runs.pop(run_id, None)
    if old is not None:
        forget(engine, old)
    if not loaded:
        engine._repairing.discard(run_id)
        return
    item = loaded[0]
    run = engine.build(item)
    if old is not None:
        run.done = old.done
    ch = q.Changes(engine.clock.now_ns())
    ch.run(run.id, updated_at=ch.at)  # a real write: it succeeds only if the store takes writes
    if run.state in RUN_TERMINAL and item.attempts:
        # Its end was written but an attempt started after it was too: it goes on.
        run.state = RunState.RUNNING
        ch.run(run.id, state=RunState.RUNNING, ended_at=None)
    if run.state in RUN_TERMINAL:
        await engine.store.write(q.apply, ch)
        engine._repairing.discard(run_id)
        run.done.set()
        return
    engine.runs[run.id] = run
    active = {row["task_id"]: row for row in item.attempts}
    ends: list[tuple[LiveAttempt, Ended]] = []
    adopt: list[tuple[TaskNode, Any]] = []
    for task in run.tasks.values():
        row = active.get(task.id)
        if task.state is TaskState.RUNNING and row is not None:
            att = engine.live.get(row["uuid"])
            pending = engine._ended.get(row["uuid"])
            if att is not None:
                att.task = task
                task.live = att
            elif pending is not None:
                pending[0].task = task
                ends.append(pending)
            else:  # not watched here (should not happen): hand it to its runner again
                adopt.append((task, row))
        elif task.state is TaskState.RUNNING:
            # Its attempt was never written: it never started.
            task.state = TaskState.RETRY_WAIT
            ch.task(run.id, task.id, state=TaskState.RETRY_WAIT, retry_at=ch.at)
            engine._set(task, TaskState.READY, ch, retry_at=None)
        elif task.state is TaskState.READY:
            engine.ready.append(task)
        elif task.state is TaskState.RETRY_WAIT:
            engine._arm_retry(task)
    for att, ended in ends:
        engine._decide(att, ended, ch)
    engine._maybe_finish(run, ch)
    try:
        await engine.store.write(q.apply, ch)
    except Exception:
        # Still not written: the next try starts again from the store.
        forget(engine, run)
        if old is not None:
            engine.runs[run_id] = old
        else:
            engine.runs.pop(run_id, None)
        raise
    for att, _ in ends:
        engine._ended.pop(att.uuid, None)
    engine._repairing.discard(run_id)
    for task in run.tasks.values():
        if task.state is TaskState.RETRY_WAIT and task.timer is None:
            engine._arm_retry(task)  # it came due while the write was under way
    engine._committed(ch)
    for task, row in adopt:
        engine.spawn(adopt_again(engine, task, row), f"adopt-{row['uuid']}")
    log.info("reloaded a run after a failed write", run=run_id, ends=len(ends))


def forget(engine: Engine, run: RunNode) -> None:
    """Drop a run's timers and queued tasks: its memory is about to be replaced."""
    for task in run.tasks.values():
        if task.timer is not None:
            task.timer.cancel()
            task.timer = None
    engine.ready = deque(t for t in engine.ready if t.run is not run)


async def adopt_again(engine: Engine, task: TaskNode, row: Any) -> None:
    """Watch again an attempt the store has as running that nothing here watches."""
    att = adopt_attempt(engine, task, row)
    att.watcher = asyncio.current_task()  # type: ignore[assignment]
    seen, tail = await engine.store.read(output_q.positions, att.id)
    info = {"seen": seen, "tail": tail, "started_at": row["started_at"]}
    await engine.watch(att, adopt=info)
