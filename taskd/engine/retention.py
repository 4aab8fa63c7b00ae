"""Retention: captured output and run history age out, a small batch at a time.

One pass every ``retention_interval`` seconds (supervised: a crash restarts it):

- history: finished runs older than ``keep_runs_days``, and beyond the newest
  ``keep_runs_per_definition`` finished runs of each name, are deleted with their tasks,
  attempts, state changes, output, log entries and ledger rows;
- output: captured output of runs that ended more than ``log_retention_days`` ago, and of
  finished runs beyond the newest ``log_retention_runs`` of each name, is deleted. An age
  watermark kept in the database means a pass looks only at runs that ended since the last.

What to delete is found on a reader; each delete is its own short write transaction, so other
writes get in between batches and the writer is never held for a whole pass.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from taskd.log import get_logger
from taskd.models import now_ns
from taskd.store import Store
from taskd.store import retention as rq

log = get_logger("taskd.retention")

BATCH = 200  # runs per delete transaction, at most
FIRST = 4  # runs in the first delete of a pass: the size of the store's runs is unknown yet
LIMIT = 0.05  # seconds one delete may hold the writer
AIM = 0.025  # what batches are sized for: half the limit, room for a slower disk moment
DAY_NS = 86400 * 1_000_000_000


class Retention:
    """Deletes old output and history; ``run_pass`` once, or ``loop`` forever."""

    def __init__(
        self,
        settings: Any,
        store: Store,
        active: Callable[[], set[int]],
        clock: Callable[[], int] = now_ns,
    ) -> None:
        self.settings = settings
        self.store = store
        self.active = active  # ids of runs the engine holds: never touched
        self.clock = clock  # wall time in ns: what counts as old is measured on the engine's
        self._output_after: dict[tuple[str, str], int] = {}  # count rule: ids done per name
        self.batch = FIRST  # runs per delete now: a run of 100,000 tasks takes longer than one

    async def loop(self) -> None:
        while True:
            await self.run_pass()
            await asyncio.sleep(self.settings.retention_interval)

    async def run_pass(self) -> dict[str, int]:
        """One pass of every rule; returns what it deleted."""
        done = {"runs": await self._history(), "output_chunks": await self._output()}
        if any(done.values()):
            log.info("retention pass", **done)
        return done

    # -- history ----------------------------------------------------------------------------

    async def _history(self) -> int:
        deleted = 0
        days, keep = self.settings.keep_runs_days, self.settings.keep_runs_per_definition
        if days > 0:
            cutoff = self.clock() - int(days * DAY_NS)
            while ids := await self.store.read(rq.aged_runs, cutoff, self.batch):
                gone = await self._delete(rq.drop_runs, self._idle(ids))
                if not gone:
                    break
                deleted += gone
            definitions = await self.store.read(rq.ledger_definitions)
            for start in range(0, len(definitions), BATCH):
                await self.store.write(rq.drop_missed, definitions[start : start + BATCH], cutoff)
        if keep > 0:
            for kind, name in await self.store.read(rq.crowded_names, keep):
                while ids := await self.store.read(
                    rq.beyond_newest, kind, name, keep, 0, self.batch
                ):
                    gone = await self._delete(rq.drop_runs, self._idle(ids))
                    if not gone:
                        break
                    deleted += gone
        return deleted

    async def _delete(self, fn: Callable[..., int], ids: list[int], *args: Any) -> int:
        if not ids:
            return 0
        # From asking to committed: the commit (writing the freed pages) is often most of a
        # delete's hold, and waiting behind other writes only makes the next batch smaller.
        t0 = time.monotonic()
        n = await self.store.write(fn, ids, *args)
        took = max(time.monotonic() - t0, 1e-4)
        # Size the next batch for AIM by the time this one took per run: at most double
        # (one fast batch is no proof), at least a quarter (a slow one may be a blip).
        per_run = took / len(ids)
        wanted = int(AIM / per_run)
        self.batch = max(1, min(BATCH, self.batch * 2, max(self.batch // 4, wanted)))
        return n

    def _idle(self, ids: list[int]) -> list[int]:
        active = self.active()
        return [i for i in ids if i not in active]

    # -- output -----------------------------------------------------------------------------

    async def _output(self) -> int:
        deleted = 0
        days, keep = self.settings.log_retention_days, self.settings.log_retention_runs
        if days > 0:
            cutoff = self.clock() - int(days * DAY_NS)
            since, after_id = await self.store.read(rq.output_watermark), 0
            while rows := await self.store.read(
                rq.ended_between, since, after_id, cutoff, asked := self.batch
            ):
                after_id, since = rows[-1]
                deleted += await self._delete(rq.drop_output, [r for r, _ in rows], since)
                if len(rows) < asked:  # the last of them (self.batch may have changed)
                    break
        if keep > 0:
            for name in await self.store.read(rq.crowded_names, keep):
                after = self._output_after.get(name, 0)
                while ids := await self.store.read(
                    rq.beyond_newest, *name, keep, after, self.batch
                ):
                    deleted += await self._delete(rq.drop_output, ids, None)
                    after = self._output_after[name] = ids[-1]
        return deleted
