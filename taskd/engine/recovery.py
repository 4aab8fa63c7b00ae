"""Coming back after a crash: reconcile the store with what really runs (SPEC §1.4).

- attempts the store has as running are handed back to their runner (``adopt``): a container
  still running is watched again from where its stored output ends; one that exited meanwhile
  gives its exit code and the rest of its output; one that is gone, and any local process
  (its pipes died with taskd), is ``lost`` and retried if attempts remain;
- whatever a runner holds for this taskd instance that the store does not know is removed;
- ready tasks are queued again, backoff timers re-armed, runs that had in fact ended are closed.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from taskd.engine.graph import LiveAttempt
from taskd.log import get_logger
from taskd.models import TaskState
from taskd.runners.base import AttemptContext, Started
from taskd.store import output as output_q
from taskd.store import runs as q

if TYPE_CHECKING:
    from taskd.engine.engine import Engine

log = get_logger("taskd.recovery")


async def recover(engine: Engine) -> None:
    loaded = await engine.store.read(q.load_runs, None)
    ch = q.Changes(engine.clock.now_ns())
    adopted: list[tuple[LiveAttempt, dict]] = []
    for item in loaded:
        run = engine.build(item)
        engine.runs[run.id] = run
        by_task = {row["task_id"]: row for row in item.attempts}
        for task in run.tasks.values():
            row = by_task.get(task.id)
            if task.state is TaskState.RUNNING and row is not None:
                adopted.append((adopt_attempt(engine, task, row), row))
            elif task.state is TaskState.RUNNING:
                # Marked running but its attempt never got recorded: it never started.
                task.state = TaskState.RETRY_WAIT
                task.retry_at = ch.at
                ch.task(run.id, task.id, state=TaskState.RETRY_WAIT, retry_at=ch.at)
                engine.set_state(task, TaskState.READY, ch, retry_at=None)
            elif task.state is TaskState.READY:
                engine.ready.append(task)
            elif task.state is TaskState.RETRY_WAIT:
                engine.arm_retry(task)
        engine.maybe_finish(run, ch)
    if ch:
        await engine.commit(ch)

    known = {att.uuid for att, _ in adopted}
    for runner in engine.runners.values():
        try:
            removed = await runner.sweep(engine.instance, known)
        except Exception as exc:  # no Docker engine right now: nothing of ours can run there
            log.warning("could not sweep for orphans", runner=runner.name, error=str(exc))
            continue
        if removed:
            log.warning("removed orphaned jobs", runner=runner.name, count=len(removed))

    for att, row in adopted:
        seen, tail = await engine.store.read(output_q.positions, att.id)
        info = {"seen": seen, "tail": tail, "started_at": row["started_at"]}
        att.watcher = engine.spawn(engine.watch(att, adopt=info), f"adopt-{att.uuid}")
    if loaded:
        log.info("recovered", runs=len(loaded), attempts=len(adopted))


def adopt_attempt(engine: Engine, task, row) -> LiveAttempt:
    cpuset = tuple(int(c) for c in row["cpuset"].split(",")) if row["cpuset"] else ()
    # Keep its capacity reserved while it runs, cores included.
    engine.capacity.take(dataclasses.replace(task.job, pin_cores=False))
    if cpuset:
        engine.capacity.free_cores = [c for c in engine.capacity.free_cores if c not in cpuset]
    ctx = AttemptContext(
        attempt_uuid=row["uuid"], run_id=task.run.id, task_id=task.id, task_name=task.name,
        number=row["number"], job=task.job, env={}, cpuset=cpuset,
    )  # fmt: skip
    att = LiveAttempt(id=row["id"], uuid=row["uuid"], task=task, number=row["number"], ctx=ctx,
                      cpuset=cpuset, reported=row["reported"])  # fmt: skip
    # Started even when the store has no container id or pid yet (taskd died between starting
    # the job and recording it): the runner finds the job by its attempt, and a kill or the
    # cleanup after its end must reach it all the same.
    att.started = Started(container_id=row["container_id"], pid=row["pid"],
                          pid_start=row["pid_start"], host=row["host"])  # fmt: skip
    task.live = att
    engine.live[att.uuid] = att
    return att
