"""The engine when the store refuses a write: memory is rebuilt from the store, never left apart.

Refused writes are injected at the store boundary (an I/O error cannot be produced on
demand); the full-disk tests use a real small filesystem.
"""

from __future__ import annotations

import asyncio
import uuid

from taskd.models import JobSpec, RunKind, TaskTemplate
from taskd.store import runs as q
from taskd.store.runs import RunPlan
from tests.faults import RefusedWrites


def sh(script: str, **kw) -> JobSpec:
    return JobSpec(runner="local", script=script, **kw)


def plan(*tasks: TaskTemplate) -> RunPlan:
    return RunPlan(kind=RunKind.DAG, name="t", trigger="api", uuid=str(uuid.uuid4()),
                   tasks=list(tasks))  # fmt: skip


async def rows(services, sql, *args):
    return await services.store.read(lambda db: [dict(r) for r in db.execute(sql, args)])


async def stored_run(services, run_id: int) -> dict:
    return (await rows(services, "SELECT * FROM runs WHERE id = ?", run_id))[0]


async def settled(services, run_id: int, within: float = 30) -> dict:
    """Wait until the store says the run ended and the engine holds nothing of it."""
    async with asyncio.timeout(within):
        while True:
            run = await stored_run(services, run_id)
            if run["ended_at"] is not None and run_id not in services.engine.runs:
                return run
            await asyncio.sleep(0.05)


def ends(fn, args) -> bool:
    """A batch that records an attempt's end."""
    return fn is q.apply and any("ended_at" in c for c in args[0].attempts.values())


def launches(fn, args) -> bool:
    return fn is q.apply and bool(args[0].new_attempts)


async def test_a_refused_end_neither_reruns_the_task_nor_leaves_the_run_running(services, tmp_path):
    counter = tmp_path / "count"
    faults = RefusedWrites(services.store)
    faults.refuse(ends, times=2)
    run = await services.engine.submit(
        plan(
            TaskTemplate("a", sh(f"echo x >> {counter}")),
            TaskTemplate("b", sh("true"), parents=[("a", True)]),
        )
    )
    stored = await settled(services, run.id)
    assert faults.refused == 2
    assert stored["state"] == "succeeded"
    assert counter.read_text() == "x\n"  # the task that succeeded ran once
    tasks = await rows(services, "SELECT name, state, attempts FROM tasks ORDER BY id")
    assert [(t["name"], t["state"], t["attempts"]) for t in tasks] == [
        ("a", "succeeded", 1), ("b", "succeeded", 1),
    ]  # fmt: skip
    attempts = await rows(services, "SELECT state, exit_code FROM attempts")
    assert [(a["state"], a["exit_code"]) for a in attempts] == [("exited", 0), ("exited", 0)]
    assert services.engine.capacity.used_slots == 0
    assert not services.engine.live


async def test_a_refused_launch_gives_its_slot_back_and_starts_the_task_later(services):
    faults = RefusedWrites(services.store)
    faults.refuse(launches, times=1)
    run = await services.engine.submit(plan(TaskTemplate("a", sh("true"))))
    stored = await settled(services, run.id)
    assert faults.refused == 1
    assert stored["state"] == "succeeded"
    attempts = await rows(services, "SELECT number, state FROM attempts")
    assert [(a["number"], a["state"]) for a in attempts] == [(1, "exited")]
    assert services.engine.capacity.used_slots == 0


def starts(fn, args) -> bool:
    """A batch that records that an attempt's job started."""
    return fn is q.apply and any("started_at" in c for c in args[0].attempts.values())


async def test_a_refused_start_is_written_with_the_attempt_end(services):
    faults = RefusedWrites(services.store)
    faults.refuse(starts, times=1)
    run = await services.engine.submit(plan(TaskTemplate("a", sh("sleep 0.2"))))
    stored = await settled(services, run.id)
    assert faults.refused == 1
    assert stored["state"] == "succeeded"
    (attempt,) = await rows(services, "SELECT state, started_at, ended_at, pid FROM attempts")
    assert attempt["state"] == "exited" and attempt["pid"]
    assert attempt["started_at"] <= attempt["ended_at"]


async def test_a_refused_restart_is_reported_and_leaves_the_run_as_stored(services, tmp_path):
    from taskd.errors import StoreError

    flag = tmp_path / "fixed"
    engine = services.engine
    run = await engine.submit(plan(TaskTemplate("fix", sh(f"test -e {flag}"))))
    assert (await settled(services, run.id))["state"] == "failed"
    flag.write_text("")
    faults = RefusedWrites(services.store)
    faults.refuse(lambda fn, args: fn is q.apply, times=1)
    try:
        await engine.restart(run.id, lambda task: 1)
    except StoreError:
        pass
    else:
        raise AssertionError("a restart that was not stored was acknowledged")
    await asyncio.sleep(1.0)  # a rerun would have started by now
    assert await rows(services, "SELECT id FROM attempts WHERE number = 2") == []
    assert run.id not in engine.runs
    assert engine.capacity.used_slots == 0
    await engine.restart(run.id, lambda task: 1)  # the store takes writes again
    assert (await settled(services, run.id))["state"] == "succeeded"


async def test_two_restarts_of_one_run_at_once_start_each_task_once(services, tmp_path):
    counter = tmp_path / "count"
    engine = services.engine
    script = f"echo x >> {counter}; test $(wc -l < {counter}) -ge 2"
    run = await engine.submit(plan(TaskTemplate("flaky", sh(script))))
    assert (await settled(services, run.id))["state"] == "failed"
    await asyncio.gather(*(engine.restart(run.id, lambda task: 1) for _ in range(2)))
    stored = await settled(services, run.id)
    assert stored["state"] == "succeeded"
    assert counter.read_text() == "x\nx\n"
    attempts = await rows(services, "SELECT number FROM attempts ORDER BY number")
    assert [a["number"] for a in attempts] == [1, 2]
    assert engine.capacity.used_slots == 0
