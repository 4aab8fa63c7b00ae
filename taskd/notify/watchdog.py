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
PRUNE_EVERY = 3600.0  # seconds between passes over the history of sent messages


class Watchdog:
    """Checks the clock-driven alerts at their deadlines and when runs end."""

    def __init__(self, store: Store, queued: Callable[[], None], keep_days: float = 0) -> None:
        self.store = store
        self.queued = queued  # wakes the delivery worker
        self.wake = asyncio.Event()
        self.keep_days = keep_days  # history of sent messages kept (0: all), as for runs
        self._pruned = -PRUNE_EVERY

    async def loop(self) -> None:
        while True:
            self.wake.clear()
            now = time.time_ns()
            actions, soonest = await self.store.read(q.clock_alerts, now)
            if actions and await self.store.write(q.apply_clock_alerts, actions, now):
                self.queued()
            await self.prune(now)
            timeout = RECHECK
            if soonest is not None:
                timeout = min(RECHECK, max(0.05, (soonest - time.time_ns()) / 1e9 + 0.01))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)

    async def prune(self, now: int) -> None:
        """Drop sent messages older than the runs kept, a few hundred per transaction."""
        loop = asyncio.get_running_loop()
        if not self.keep_days or loop.time() - self._pruned < PRUNE_EVERY:
            return
        self._pruned = loop.time()
        before = now - int(self.keep_days * 86400e9)
        oldest = await self.store.read(q.oldest_done)
        while oldest is not None and oldest < before:
            if not await self.store.write(q.prune, before):
                break
            oldest = await self.store.read(q.oldest_done)
