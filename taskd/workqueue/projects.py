"""The work queue's projects: settings, access grants, secrets, maintenance and monitoring.

Managed with taskd's admin credential (the seed used manager sessions). Part of the queue
service: ``QueueService.projects``.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from taskd.errors import BadRequest, Conflict, Forbidden, NotFound
from taskd.workqueue import store as sq
from taskd.workqueue import store_projects as qp
from taskd.workqueue.model import NS, project_json, worker_json

if TYPE_CHECKING:
    from taskd.workqueue.service import QueueService, WorkerAuth

COUNT_FIELDS = (
    "new_task_count",
    "failed_task_count",
    "closed_task_count",
    "worker_access_count",
    "awaiting_verification_count",
)


def _existing(db: sqlite3.Connection, pid: int) -> sqlite3.Row:
    project = qp.project_by_id(db, pid)
    if project is None:
        raise NotFound("Project not found")
    return project


def _check_chain(db: sqlite3.Connection, chain: int | None, pid: int | None) -> None:
    if chain is None:
        return
    if chain == pid:
        raise BadRequest("a project cannot chain to itself")
    if qp.project_by_id(db, chain) is None:
        raise BadRequest(f"chain: there is no project {chain}")


def _snapshot_json(row: Any, at: int) -> dict[str, Any]:
    out = {name: row[name] for name in COUNT_FIELDS}
    out["time_stamp"] = at
    return out


class QueueProjects:
    """Everything a manager does to projects of the work queue."""

    def __init__(self, queue: QueueService) -> None:
        self.queue = queue
        self.store = queue.store

    # -- settings -----------------------------------------------------------------------------

    async def create(self, fields: dict[str, Any]) -> int:
        return await self.store.write(self._create_tx, fields)

    def _create_tx(self, db: sqlite3.Connection, fields: dict[str, Any]) -> int:
        _check_chain(db, fields.get("chain"), None)
        if qp.name_taken(db, fields["name"]):
            raise Conflict(f"a project named {fields['name']!r} already exists")
        return qp.insert_project(db, fields, self.queue.clock())

    async def update(self, pid: int, fields: dict[str, Any]) -> None:
        """Change only the fields given; resets the project's rate limiters, as the seed."""
        await self.store.write(self._update_tx, pid, fields)

    def _update_tx(self, db: sqlite3.Connection, pid: int, fields: dict[str, Any]) -> None:
        project = _existing(db, pid)
        if fields.get("public", project["public"]) and fields.get("hidden", project["hidden"]):
            raise BadRequest("a project cannot be both public and hidden")
        _check_chain(db, fields.get("chain"), pid)
        if (
            "name" in fields
            and fields["name"] != project["name"]
            and qp.name_taken(db, fields["name"])
        ):
            raise Conflict(f"a project named {fields['name']!r} already exists")
        qp.update_project(db, pid, fields)
        self.queue.forget_limits(pid)

    async def get(self, pid: int, *, can_read: bool) -> dict[str, Any]:
        row = await self.store.read(qp.project_by_id, pid)
        if row is None or (row["hidden"] and not can_read):
            raise NotFound("Project not found")  # hidden: as if it did not exist
        return project_json(row)

    async def list_all(self, *, can_read: bool) -> list[dict[str, Any]]:
        return [project_json(r) for r in await self.store.read(qp.list_projects, can_read)]

    # -- access -------------------------------------------------------------------------------

    async def request_access(
        self, worker: WorkerAuth, pid: int, assign: bool, submit: bool
    ) -> None:
        if not (assign or submit):
            raise BadRequest("ask for assign, submit or both")
        await self.store.write(self._request_tx, worker.id, pid, assign, submit)

    def _request_tx(
        self, db: sqlite3.Connection, worker: int, pid: int, assign: bool, submit: bool
    ) -> None:
        # Hidden projects accept requests too: knowing the id is the way in.
        _existing(db, pid)
        if not qp.insert_access_request(db, pid, worker, assign, submit, self.queue.clock()):
            raise BadRequest(  # 400, as task_tracker answers it
                "You already have an active request or access to this project"
            )

    async def accept_request(self, pid: int, wid: int) -> None:
        if not await self.store.write(qp.accept_access_request, pid, wid):
            raise NotFound(f"No pending access request from worker {wid} on project {pid}")

    async def reject_request(self, pid: int, wid: int) -> None:
        """Refuse a pending request, or take back access already granted."""
        if not await self.store.write(qp.delete_access, pid, wid):
            raise NotFound(f"Worker {wid} has no request or access on project {pid}")

    async def access_list(self, pid: int) -> list[dict[str, Any]]:
        rows = await self.store.read(self._access_list_q, pid)
        return [
            {
                "assign": bool(r["assign"]),
                "submit": bool(r["submit"]),
                "request": bool(r["request"]),
                "project": r["project"],
                "worker": worker_json(r),
            }
            for r in rows
        ]

    @staticmethod
    def _access_list_q(db: sqlite3.Connection, pid: int) -> list[sqlite3.Row]:
        _existing(db, pid)
        return qp.access_list(db, pid)

    async def assignees(self, pid: int) -> list[dict[str, Any]]:
        rows = await self.store.read(self._assignees_q, pid, self.queue.clock())
        return [
            {"assignee": r["alias"], "worker": r["worker"], "task_count": r["task_count"]}
            for r in rows
        ]

    @staticmethod
    def _assignees_q(db: sqlite3.Connection, pid: int, now: int) -> list[sqlite3.Row]:
        _existing(db, pid)
        return sq.assignees(db, pid, now)

    # -- secret -------------------------------------------------------------------------------

    async def secret(self, pid: int, worker: WorkerAuth | None) -> str:
        """The project's secret, for an admin (``worker`` None) or a worker with ASSIGN."""
        return await self.store.read(self._secret_q, pid, worker.id if worker else None)

    @staticmethod
    def _secret_q(db: sqlite3.Connection, pid: int, worker: int | None) -> str:
        project = _existing(db, pid)
        if worker is not None:
            access = qp.access_of(db, pid, worker)
            granted = access is not None and not access["request"]
            if project["hidden"] and not granted:
                raise NotFound("Project not found")
            if not (granted and access["assign"]):
                raise Forbidden("Only workers with ASSIGN access may read the project secret")
        return qp.project_secret(db, pid)

    async def set_secret(self, pid: int, secret: str) -> None:
        await self.store.write(self._set_secret_tx, pid, secret)

    @staticmethod
    def _set_secret_tx(db: sqlite3.Connection, pid: int, secret: str) -> None:
        _existing(db, pid)
        qp.set_project_secret(db, pid, secret)

    # -- maintenance --------------------------------------------------------------------------

    async def reset_failed(self, pid: int) -> int:
        """FAILED tasks become NEW again with no retries counted."""
        return await self.store.write(self._maintain_tx, sq.reset_failed, pid)

    async def reclaim_assigned(self, pid: int) -> int:
        """Every lease of the project is taken back (not counted as a retry)."""
        return await self.store.write(self._maintain_tx, sq.reclaim_assigned, pid)

    async def hard_reset(self, pid: int) -> int:
        """Every task of the project is deleted, without counting any as closed."""
        return await self.store.write(self._maintain_tx, sq.hard_reset, pid)

    @staticmethod
    def _maintain_tx(db: sqlite3.Connection, action: Any, pid: int) -> int:
        _existing(db, pid)
        return action(db, pid)

    # -- monitoring ---------------------------------------------------------------------------

    async def monitoring(self, pid: int, count: int) -> list[dict[str, Any]]:
        """The counts right now, then the ``count - 1`` latest stored snapshots."""
        now = self.queue.clock() // NS
        return await self.store.read(self._monitoring_q, pid, 0, now, now, count)

    async def monitoring_between(self, pid: int, since: int, until: int) -> list[dict[str, Any]]:
        """Snapshots taken in [since, until] (seconds), with the counts now if now is in it."""
        return await self.store.read(
            self._monitoring_q, pid, since, until, self.queue.clock() // NS, 100_000
        )

    @staticmethod
    def _monitoring_q(
        db: sqlite3.Connection, pid: int, since: int, until: int, now: int, limit: int
    ) -> list[dict[str, Any]]:
        current = sq.current_counts(db, pid)
        if current is None:
            raise NotFound("Project not found")
        out = []
        if since <= now <= until:
            out.append(_snapshot_json(current, now))
            limit -= 1
        stored = sq.snapshots(db, pid, since, until, limit) if limit > 0 else []
        out.extend(_snapshot_json(row, row["taken_at"]) for row in stored)
        return out
