"""Time as an argument: the engine and the scheduler read the time and set timers through this.

``Clock`` is the real one: the event loop's monotonic time for timers and waits, the wall clock
for stamps stored in the database. ``FakeClock`` advances only when told to, so tests of
backoff, timeouts, fairness and schedules step time instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol


class Timer(Protocol):
    """What ``call_later`` returns: a timer that can be cancelled before it fires."""

    def cancel(self) -> None: ...


class Clock:
    """The real time: timers and waits on the event loop, stamps from the wall clock."""

    def time(self) -> float:
        """Monotonic seconds, for timers and for measuring how long something waited."""
        return asyncio.get_running_loop().time()

    def now_ns(self) -> int:
        """Wall time in nanoseconds since the epoch, as stamped in the store."""
        return time.time_ns()

    def now(self) -> datetime:
        """Wall time as an aware UTC datetime (schedules are computed on it)."""
        return datetime.now(UTC)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Call ``callback(*args)`` after ``delay`` seconds."""
        return asyncio.get_running_loop().call_later(delay, callback, *args)

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        """Wait for ``event`` at most ``seconds``; whether it was set."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        return event.is_set()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeTimer:
    """A timer of a fake clock."""

    __slots__ = ("_cancelled", "args", "callback", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled


class FakeClock(Clock):
    """A clock that stands still until ``advance`` or ``step_wall`` moves it.

    Monotonic and wall time move together, like a real machine's; ``step_wall`` moves only the
    wall clock, like an operator setting the time. Timers fire, in order of due time, when the
    clock is moved past them.
    """

    def __init__(self, start: datetime, mono: float = 1000.0) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be a timezone-aware datetime")
        self._mono = mono
        self._wall_ns = int(start.timestamp()) * 1_000_000_000 + start.microsecond * 1000
        self._timers: list[tuple[float, int, FakeTimer]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self._mono

    def now_ns(self) -> int:
        return self._wall_ns

    def now(self) -> datetime:
        seconds, ns = divmod(self._wall_ns, 1_000_000_000)
        return datetime.fromtimestamp(seconds, tz=UTC) + timedelta(microseconds=ns // 1000)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> FakeTimer:
        timer = FakeTimer(self._mono + max(0.0, delay), callback, args)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        woken = asyncio.get_running_loop().create_future()

        def wake(_: Any = None) -> None:
            if not woken.done():
                woken.set_result(None)

        timer = self.call_later(seconds, wake)
        waiter = asyncio.ensure_future(event.wait())
        waiter.add_done_callback(wake)
        try:
            await woken
        finally:
            timer.cancel()
            waiter.cancel()
        return event.is_set()

    async def sleep(self, seconds: float) -> None:
        done = asyncio.get_running_loop().create_future()
        timer = self.call_later(seconds, lambda: done.done() or done.set_result(None))
        try:
            await done
        finally:
            timer.cancel()

    # -- moving time ------------------------------------------------------------------------

    def next_due(self) -> float | None:
        """The monotonic time of the earliest timer still armed, if any."""
        while self._timers and self._timers[0][2].cancelled():
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def move_to(self, when: float) -> int:
        """Set the time to ``when`` (never back), firing the timers due by then, in order.

        Fires only timers armed before the call: one a callback arms for "now" waits for the
        next move, so a caller can let the loop react between the two. Returns how many fired.
        """
        fired = 0
        due: list[FakeTimer] = []
        while self._timers and self._timers[0][0] <= when:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled():
                due.append(timer)
        if when > self._mono:
            self._wall_ns += round((when - self._mono) * 1e9)
            self._mono = when
        for timer in due:
            if not timer.cancelled():  # an earlier callback may have cancelled it
                timer.cancel()
                timer.callback(*timer.args)
                fired += 1
        return fired

    def step_wall(self, seconds: float) -> None:
        """Move only the wall clock (an operator or NTP stepping it), back or forward."""
        self._wall_ns += round(seconds * 1e9)
