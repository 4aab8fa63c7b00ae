"""Capacity and fairness of the engine on a fake runner and a fake clock.

Slots, CPUs and memory decide who starts; a big job passed over for too long reserves room.
Start times are exact fake seconds, so the placement is asserted, not sampled.
"""

from __future__ import annotations

import pytest

from taskd.errors import BadRequest
from tests.unit.fakes import MONDAY, Job, World, starts, task

T0 = 1000.0


# -- capacity and fairness ----------------------------------------------------------------


async def test_no_more_jobs_run_at_once_than_the_host_allows(narrow):
    for i in range(5):
        narrow.runner.script(f"t{i}", Job(duration=10))
    await narrow.submit(*(task(f"t{i}") for i in range(5)))
    await narrow.drain()
    assert [starts(narrow, f"t{i}")[0] for i in range(5)] == [T0, T0, T0 + 10, T0 + 10, T0 + 20]


async def test_jobs_are_placed_by_cpu_and_memory(settings):
    w = await World(settings, MONDAY).open(cpus=4.0, memory_mb=1000)
    try:
        w.runner.default = Job(duration=10)
        await w.submit(task("big", cpus=3), task("mem", memory_mb=800), task("small", cpus=1),
                       task("heavy", memory_mb=400))  # fmt: skip
        await w.drain()
        # big and mem fit together, so does small; heavy needs mem's memory back.
        assert [starts(w, n)[0] for n in ("big", "mem", "small", "heavy")] == [
            T0, T0, T0, T0 + 10,
        ]  # fmt: skip
    finally:
        await w.close()


async def test_a_job_bigger_than_the_host_is_refused_at_submission(settings):
    w = await World(settings, MONDAY).open(cpus=2.0)
    try:
        with pytest.raises(BadRequest) as err:
            await w.submit(task("huge", cpus=8))
        assert "asks for 8 CPUs" in err.value.details[0]
        assert await w.rows("SELECT id FROM runs") == []
    finally:
        await w.close()


async def test_runs_share_the_host_first_come_first_served(narrow):
    narrow.runner.default = Job(duration=10)
    await narrow.submit(task("a1"), task("a2"), task("a3"), name="first")
    await narrow.submit(task("b1"), name="second")
    await narrow.drain()
    assert starts(narrow, "a3") == [T0 + 10]
    assert starts(narrow, "b1") == [T0 + 10]


async def stream_with_big_job(w, fair_wait: float) -> float:
    """Small one-CPU jobs of staggered lengths keep a four-CPU host busy around a big job."""
    w.engine.fair_wait = fair_wait
    w.runner.script("big", Job(duration=1))
    for i in range(12):
        w.runner.script(f"s{i}", Job(duration=10 + (i % 4) * 3))
    await w.submit(*(task(f"s{i}", cpus=1) for i in range(3)), name="early")
    await w.submit(task("big", cpus=4), name="big")
    await w.submit(*(task(f"s{i}", cpus=1) for i in range(3, 12)), name="late")
    await w.drain()
    return starts(w, "big")[0]


async def test_a_big_job_passed_over_too_long_reserves_room_and_then_runs(settings):
    w = await World(settings, MONDAY).open(cpus=4.0, max_parallel=8)
    try:
        big = await stream_with_big_job(w, fair_wait=30)
        last_small = max(starts(w, f"s{i}")[0] for i in range(12))
        assert big < last_small  # it did not wait for the stream to dry up
        assert big <= T0 + 30 + 16  # reserved after 30 s; room within one small job's length
    finally:
        await w.close()


async def test_without_fairness_small_jobs_would_starve_the_big_one(settings):
    w = await World(settings, MONDAY).open(cpus=4.0, max_parallel=8)
    try:
        big = await stream_with_big_job(w, fair_wait=float("inf"))
        last_small = max(starts(w, f"s{i}")[0] for i in range(12))
        assert big > last_small
    finally:
        await w.close()


async def test_many_tasks_finish_deterministically(narrow):
    narrow.runner.default = Job(duration=1)
    root = task("root")
    leaves = [task(f"l{i}", "root") for i in range(20)]
    run = await narrow.submit(root, *leaves, task("end", *(f"l{i}" for i in range(20))))
    await narrow.drain()
    assert await narrow.run_state(run.id) == "succeeded"
    assert starts(narrow, "end") == [T0 + 1 + 10]  # 20 leaves, two at a time, 1 s each
    assert narrow.clock.time() == T0 + 12
