"""The supervisor on real asyncio tasks: crash, backoff, restart, recovery, one-shot work."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from taskd.engine import supervisor as sup
from taskd.engine.supervisor import Supervisor


async def wait_until(predicate, within: float = 10.0) -> None:
    for _ in range(int(within / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {within} s")


async def test_a_crashing_loop_is_down_restarted_counted_then_up(monkeypatch):
    monkeypatch.setattr(sup, "BACKOFF_FIRST", 0.05)
    monkeypatch.setattr(sup, "STABLE", 0.2)
    registry = CollectorRegistry()
    supervisor = Supervisor(registry)
    starts = 0

    async def loop():
        nonlocal starts
        starts += 1
        if starts <= 2:
            raise RuntimeError(f"crash {starts}")
        await asyncio.Event().wait()  # then runs for good

    supervisor.spawn("looping", loop)
    await wait_until(lambda: "looping" in supervisor.down)
    assert supervisor.down["looping"].startswith("RuntimeError: crash")
    await wait_until(lambda: starts == 3 and "looping" not in supervisor.down)
    restarts = registry.get_sample_value("taskd_background_restarts_total", {"part": "looping"})
    assert restarts == 2
    await supervisor.stop()


async def test_one_shot_work_is_retried_until_it_succeeds_and_then_ends(monkeypatch):
    monkeypatch.setattr(sup, "BACKOFF_FIRST", 0.05)
    supervisor = Supervisor(CollectorRegistry())
    tries = 0

    async def drain():
        nonlocal tries
        tries += 1
        if tries == 1:
            raise OSError("the store is busy")

    task = supervisor.spawn("drain-p", drain, part="drain", once=True)
    await asyncio.wait_for(task, 10)
    assert tries == 2 and supervisor.down == {}


async def test_stop_cancels_every_part():
    supervisor = Supervisor(CollectorRegistry())
    task = supervisor.spawn("forever", lambda: asyncio.Event().wait())
    await asyncio.sleep(0)
    await supervisor.stop()
    assert task.cancelled()
