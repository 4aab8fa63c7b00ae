"""The scheduler recovers by itself: after refused writes, a taken slot and a clock stepped back.

Real store, real local processes. The stepped clock is injected (the machine's clock cannot be
stepped safely under a running test); the full disk is a real small filesystem.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from taskd.app import Services
from taskd.engine.clock import Clock
from taskd.errors import StoreError
from taskd.models import JobSpec, RunKind, TaskTemplate, now_ns
from taskd.processes import definitions as defs
from taskd.processes import store as dq
from taskd.processes.scheduler import from_ns, to_ns
from taskd.store import tokens
from taskd.store.runs import RunPlan
from tests.faults import small_disk
from tests.processes.sundial import definition, shell, wait_for

EVERY_SECOND = {"cron_schedule": {"seconds": "*/1", "minutes": "*", "hours": "*",
                                  "day_of_month": "*", "month": "*", "day_of_week": "?"}}  # fmt: skip


async def rows(services, sql, *args):
    return await services.store.read(lambda db: [dict(r) for r in db.execute(sql, args)])


async def count_runs(services, name: str) -> int:
    found = await rows(services, "SELECT COUNT(*) AS n FROM runs WHERE name = ?", name)
    return found[0]["n"]


async def more_runs(services, name: str, than: int, within: float = 15) -> int:
    async def enough():
        n = await count_runs(services, name)
        return n if n > than else None

    return await wait_for(enough, within=within)


async def put(services, name: str, schedule: dict, script: str = "true") -> None:
    doc = defs.parse_definition(definition(name, shell("a", script), schedule=schedule), name)
    await services.store.write(dq.put, name, doc, now_ns())
    await services.scheduler.refresh(name)


async def no_double_fire(services) -> None:
    fired = await rows(services, "SELECT slot, run_id FROM ledger WHERE status = 'fired'")
    assert len({r["run_id"] for r in fired}) == len(fired)
    slots = await rows(services, "SELECT extra FROM runs WHERE kind = 'process'")
    assert len(fired) == len([s for s in slots if '"slot"' in s["extra"]])


async def test_a_continuous_schedule_goes_on_after_its_slot_was_taken(settings):
    services = await Services.open(settings)
    await services.engine.start()
    doc = defs.parse_definition(
        definition("loop", shell("a", "true"),
                   schedule={"continuous_schedule": {"buffer_seconds": 0.5}}),
        "loop",
    )  # fmt: skip
    at = to_ns(from_ns(now_ns()))  # the slot the scheduler will compute, to the microsecond

    def put_with_first_slot_taken(db):
        dq.put(db, "loop", doc, at)
        dq.record_slots(db, "loop", [(at, "missed")], at)

    await services.store.write(put_with_first_slot_taken)
    await services.scheduler.start()
    try:
        await more_runs(services, "loop", 1, within=10)
        await no_double_fire(services)
    finally:
        await services.scheduler.stop()
        await services.engine.stop()
        await services.close()


# On the wall clock it takes seconds; tests/unit/test_scheduler_fake.py steps the same clock
# deterministically in milliseconds, so here it runs with the slow tests.
@pytest.mark.slow
async def test_a_clock_stepped_back_and_corrected_does_not_stop_firing(services):
    step = [timedelta(0)]

    class Stepped(Clock):
        def now(self) -> datetime:
            return datetime.now(UTC) + step[0]

    services.scheduler.clock = Stepped()
    await put(services, "tick", EVERY_SECOND)
    n = await more_runs(services, "tick", 1)
    step[0] = -timedelta(hours=1)  # the clock goes back an hour
    n = await more_runs(services, "tick", n + 1)
    step[0] = timedelta(0)  # and is put right
    await more_runs(services, "tick", n + 1)
    await no_double_fire(services)


@pytest.mark.timeout(120)
async def test_a_full_disk_keeps_every_change_and_every_schedule_fires_afterwards(
    settings, tmp_path
):
    with small_disk(tmp_path / "disk") as disk:
        s = dataclasses.replace(settings, db=disk.path / "taskd.db")
        services = await Services.open(s)
        await services.engine.start()
        await services.scheduler.start()
        try:
            await put(services, "tick", EVERY_SECOND)
            await put(services, "loop", {"continuous_schedule": {"buffer_seconds": 0.5}})
            job = JobSpec(runner="local", script="sleep 1.5")
            dag = await services.engine.submit(
                RunPlan(kind=RunKind.DAG, name="d", trigger="api", uuid="d-1",
                        tasks=[TaskTemplate("a", job),
                               TaskTemplate("b", job, parents=[("a", True)])])
            )  # fmt: skip
            await more_runs(services, "tick", 1)
            await more_runs(services, "loop", 1)

            disk.fill(s.db)
            with pytest.raises(StoreError):
                await services.store.write(tokens.meta_setdefault, "probe", "x" * 65536)
            await asyncio.sleep(3)  # a spell: fires, starts and ends are refused
            disk.free()

            tick = await count_runs(services, "tick")
            loop = await count_runs(services, "loop")
            await more_runs(services, "tick", tick + 1, within=30)
            await more_runs(services, "loop", loop + 1, within=30)
            await asyncio.wait_for(dag.done.wait(), 30)

            # Stop the schedules; then nothing may stay running.
            for name in ("tick", "loop"):
                await services.store.write(dq.set_paused, name, True, now_ns())
                await services.scheduler.refresh(name)

            async def idle():
                active = await rows(
                    services, "SELECT id FROM runs WHERE state IN ('queued', 'running')"
                )
                return (not active and not services.engine.runs) or None

            await wait_for(idle, within=30)
            assert services.engine.capacity.used_slots == 0
            dag_tasks = await rows(services, "SELECT name, state, attempts FROM tasks"
                                   " WHERE run_id = ? ORDER BY id", dag.id)  # fmt: skip
            assert [(t["state"], t["attempts"]) for t in dag_tasks] == [
                ("succeeded", 1), ("succeeded", 1),
            ]  # fmt: skip
            attempts = await rows(
                services,
                "SELECT COUNT(*) AS n FROM attempts WHERE state IN ('starting', 'running')",
            )
            assert attempts[0]["n"] == 0
            await no_double_fire(services)
        finally:
            await services.scheduler.stop()
            await services.engine.stop()
            await services.close()
