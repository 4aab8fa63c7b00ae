"""Drain mode: run the engine until nothing can make progress, then return.

With a ``FakeClock`` the engine's timers (backoff, max runtime) and a fake runner's job
durations wait on that clock; when everything else is waiting, the clock is moved to the next
due timer, so a test of hours of backoff takes milliseconds and never sleeps. With the real
clock, draining waits for the active runs to end.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING

from taskd.engine.clock import FakeClock
from taskd.models import TaskState

if TYPE_CHECKING:
    from taskd.engine.engine import Engine

# Without a view of the loop's queue of callbacks, this many idle turns in a row count as idle.
IDLE_TURNS = 20


class StillBusy(RuntimeError):
    """Draining moved the clock this many times and the engine still had work."""


async def settle(engine: Engine) -> None:
    """Let the loop run until every task waits on a timer, an event or a job.

    The store works on its own threads: while it reads or writes, the loop is not idle even
    with no callback queued, so its work is waited for as well.
    """
    loop = asyncio.get_running_loop()
    queued = getattr(loop, "_ready", None)  # the loop's callbacks due now (asyncio's own loop)
    turns = 0
    while turns < (2 if queued is not None else IDLE_TURNS):
        busy = not engine.store.idle
        if busy:
            await engine.store.until_idle()
        await asyncio.sleep(0)
        turns = 0 if busy or queued else turns + 1


def has_work(engine: Engine) -> bool:
    """Whether something of the engine can still change: queued, running, backing off, ends."""
    if engine.live or engine._ended or engine._repairing:
        return True
    if any(t.state is TaskState.READY and t.live is None for t in engine.ready):
        return True
    return any(
        task.timer is not None for run in engine.runs.values() for task in run.tasks.values()
    )


async def drain(engine: Engine, *, until: float | None = None, max_steps: int = 10_000) -> None:
    """Run until no task is queued, running or backing off and no store write is pending.

    A job that never ends and that no timer will stop leaves the engine with work it cannot
    finish: draining returns then, too. ``until`` (monotonic time of the clock) keeps the clock
    from being moved past it.
    """
    clock = engine.clock
    if not isinstance(clock, FakeClock):
        while engine.runs:  # an ended run leaves the dict once its end is written
            await next(iter(engine.runs.values())).done.wait()
        return
    for _ in range(max_steps):
        await settle(engine)
        if not has_work(engine):
            return
        due = clock.next_due()
        if due is None or (until is not None and due > until):
            return
        clock.move_to(due)
    raise StillBusy(f"the engine still had work after {max_steps} steps of the clock")


async def advance(engine: Engine, seconds: float, *, max_steps: int = 100_000) -> None:
    """Move a fake clock ``seconds`` on, firing each timer at its time and letting the loop
    react to it before the next one."""
    clock = engine.clock
    assert isinstance(clock, FakeClock), "advance needs the engine to run on a FakeClock"
    target = clock.time() + seconds
    for _ in range(max_steps):
        await settle(engine)
        due = clock.next_due()
        if due is None or due > target:
            break
        clock.move_to(due)
    else:
        raise StillBusy(f"more than {max_steps} timers fell due")
    clock.move_to(target)
    await settle(engine)


async def advance_to(engine: Engine, when: datetime) -> None:
    """Move a fake clock on until its wall time is ``when``."""
    await advance(engine, max(0.0, (when - engine.clock.now()).total_seconds()))
