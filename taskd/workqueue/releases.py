"""Releases of the work queue: a worker's results on the tasks it leased, one or many at once.

A mixin of ``QueueService``: each release is a transaction function run on the store's writer
thread, and its reply is sent after the commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from taskd.errors import Conflict, NotFound
from taskd.workqueue import store as sq
from taskd.workqueue.model import Release, Result, Status, fails_for_good, needed_verifications

if TYPE_CHECKING:
    from taskd.store import Store
    from taskd.workqueue.service import WorkerAuth


@dataclass(frozen=True, slots=True)
class Released:
    """The answer to a release: ``updated`` as the seed means it, and why not."""

    ok: bool
    updated: bool
    message: str | None = None


NOT_HELD = (
    "you do not hold this task any more (your lease expired, it was taken back or given to"
    " another worker, or it is closed)"
)


def _holds(task: sqlite3.Row, worker: int, now: int) -> bool:
    """Whether ``worker`` holds a live lease on ``task`` (only then may it release it)."""
    if task["assignee"] != worker or task["status"] != Status.NEW:
        return False
    return task["lease_expires_at"] > now


def _listed(items: list[str], most: int = 5) -> str:
    """The first few of ``items``, and how many more: a message stays readable."""
    shown = ", ".join(items[:most])
    return shown if len(items) <= most else f"{shown} and {len(items) - most} more"


class Releases:
    """Applying results: the single release, the all-or-nothing batch, and what both do."""

    store: Store
    clock: Callable[[], int]

    async def release(
        self, worker: WorkerAuth, task: int, result: Result, verification: int
    ) -> Released:
        """Apply a worker's result to the task it holds a live lease on."""
        return await self.store.write(self._release_tx, worker.id, task, result, verification)

    def _release_tx(
        self, db: sqlite3.Connection, worker: int, tid: int, result: Result, verification: int
    ) -> Released:
        now = self.clock()
        task = sq.task_by_id(db, tid)
        if task is None:
            raise NotFound("Task not found")
        if not _holds(task, worker, now):
            # ok true with updated false, as the seed's release answers it.
            return Released(True, False, f"Task was not marked as closed: {NOT_HELD}")
        return self._apply_release(db, task, worker, result, verification, now)

    async def release_many(self, worker: WorkerAuth, releases: list[Release]) -> list[Released]:
        """Apply several results in one commit, all or none (see ``_release_many_tx``)."""
        return await self.store.write(self._release_many_tx, worker.id, releases)

    def _release_many_tx(
        self, db: sqlite3.Connection, worker: int, releases: list[Release]
    ) -> list[Released]:
        """Every task must exist and be held by ``worker`` under a live lease, else nothing is
        applied: a client then knows that all its results were recorded, or none was."""
        now = self.clock()
        tasks = sq.tasks_by_ids(db, [r.task for r in releases])
        missing = [f"releases[{i}] (task {r.task})" for i, r in enumerate(releases)
                   if r.task not in tasks]  # fmt: skip
        if missing:
            raise NotFound(f"No such task: {_listed(missing)}; nothing was released")
        lost = [f"releases[{i}] (task {r.task})" for i, r in enumerate(releases)
                if not _holds(tasks[r.task], worker, now)]  # fmt: skip
        if lost:
            raise Conflict(
                f"{_listed(lost)}: {NOT_HELD}; nothing was released. Send the others again "
                "without them."
            )
        return [
            self._apply_release(db, tasks[r.task], worker, r.result, r.verification, now)
            for r in releases
        ]

    def _apply_release(
        self,
        db: sqlite3.Connection,
        task: sqlite3.Row,
        worker: int,
        result: Result,
        verification: int,
        now: int,
    ) -> Released:
        tid = task["id"]
        if result == Result.SKIP:
            sq.unassign(db, tid, retries=task["retries"], status=Status.NEW)
            return Released(True, True)
        if result == Result.FAIL:
            retries = task["retries"] + 1
            failed = fails_for_good(retries, task["max_retries"])
            sq.unassign(db, tid, retries=retries, status=Status.FAILED if failed else Status.NEW)
            return Released(
                True,
                True,
                f"The task failed {retries} time(s) and is now FAILED" if failed else None,
            )
        needed = needed_verifications(task["verification_count"])
        if needed > 1:
            agreeing = sq.record_verification(db, tid, worker, verification, now)
            if agreeing < needed:
                sq.unassign(db, tid, retries=task["retries"], status=Status.NEW)
                return Released(
                    True,
                    False,
                    f"Task was not marked as closed: {agreeing} of "
                    f"{needed} workers agree on this verification",
                )
        sq.close_task(db, task, worker, now)
        return Released(True, True)
