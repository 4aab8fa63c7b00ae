"""The engine on a fake runner and a fake clock: every behaviour, deterministic, no sleeps.

Real SQLite store in a temporary directory; the runner plays scripted jobs and time moves only
when the engine has nothing else to do (drain mode), so hours of backoff take milliseconds.
"""

from __future__ import annotations

import pytest

from tests.unit.fakes import MONDAY, Job, World, task


@pytest.fixture
async def world(settings):
    w = await World(settings, MONDAY).open()
    yield w
    await w.close()


async def test_a_dag_runs_in_dependency_order(world):
    world.runner.script("a", Job(duration=5))
    world.runner.script("b", Job(duration=3))
    run = await world.submit(task("a"), task("b", "a"), task("c", "a"))
    await world.drain()
    assert await world.run_state(run.id) == "succeeded"
    a, b, c = world.runner.of("a")[0], world.runner.of("b")[0], world.runner.of("c")[0]
    assert (a.started_at, a.ended_at) == (1000.0, 1005.0)
    assert b.started_at == c.started_at == 1005.0
    assert b.ended_at == 1008.0
