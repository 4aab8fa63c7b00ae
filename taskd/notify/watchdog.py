"""Alerts that time alone raises: a definition that did not succeed for a while (dead man),
or whose slot did not start in time (late start). Sleeps until the next deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from taskd.store import Store
from taskd.store import notifications as q

RECHECK = 60.0  # at most this long between checks: definitions edited since are seen


class Watchdog:
    """Checks the clock-driven alerts at their deadlines and when runs end."""

    def __init__(self, store: Store, queued: Callable[[], None]) -> None:
        self.store = store
        self.queued = queued  # wakes the delivery worker
        self.wake = asyncio.Event()

    async def loop(self) -> None:
        while True:
            self.wake.clear()
            now = time.time_ns()
            actions, soonest = await self.store.read(q.clock_alerts, now)
            if actions and await self.store.write(q.apply_clock_alerts, actions, now):
                self.queued()
            timeout = RECHECK
            if soonest is not None:
                timeout = min(RECHECK, max(0.05, (soonest - time.time_ns()) / 1e9 + 0.01))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)
