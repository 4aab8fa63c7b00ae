"""The clocks the engine and scheduler run on: the fake one moves only when told."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from taskd.engine.clock import Clock, FakeClock
from taskd.runners.base import RUNNERS

START = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)


async def test_timers_fire_in_due_order_and_same_time_ones_in_arming_order():
    clock = FakeClock(START)
    fired = []
    for name, delay in (("c", 5), ("a", 1), ("b", 5), ("never", 6)):
        clock.call_later(delay, fired.append, name)
    assert clock.move_to(clock.time() + 5) == 3
    assert fired == ["a", "c", "b"]
    assert clock.next_due() == clock.time() + 1


async def test_a_cancelled_timer_never_fires_and_is_not_due():
    clock = FakeClock(START)
    fired = []
    timer = clock.call_later(1, fired.append, "x")
    timer.cancel()
    assert clock.next_due() is None
    clock.move_to(clock.time() + 10)
    assert fired == []


async def test_wall_and_monotonic_time_move_together_unless_the_wall_is_stepped():
    clock = FakeClock(START, mono=50.0)
    clock.move_to(80.0)
    assert clock.time() == 80.0 and clock.now() == START + timedelta(seconds=30)
    clock.step_wall(-3600)
    assert clock.time() == 80.0 and clock.now() == START + timedelta(seconds=30 - 3600)
    assert clock.now_ns() == int((START.timestamp() + 30 - 3600) * 1e9)
    clock.move_to(10.0)  # never back
    assert clock.time() == 80.0


async def test_a_wait_ends_on_its_event_or_when_the_clock_reaches_its_timeout():
    clock = FakeClock(START)
    event = asyncio.Event()
    waiting = asyncio.ensure_future(clock.wait(event, 30))
    await asyncio.sleep(0)
    clock.move_to(clock.time() + 29.9)
    await asyncio.sleep(0)
    assert not waiting.done()
    clock.move_to(clock.time() + 0.1)
    assert await waiting is False
    event.set()
    assert await clock.wait(event, 30) is True
    assert clock.next_due() is None  # the wait left no timer behind


async def test_the_real_clock_waits_on_the_event_loop():
    clock = Clock()
    event = asyncio.Event()
    assert await clock.wait(event, 0) is False
    asyncio.get_running_loop().call_soon(event.set)
    assert await clock.wait(event, 5) is True
    assert abs(clock.time() - asyncio.get_running_loop().time()) < 1.0


async def test_the_fake_runner_is_not_a_runner_an_api_user_can_pick():
    import tests.unit.fakes  # noqa: F401  (importing it must not register it)

    assert "fake" not in RUNNERS
