"""The work queue (task_tracker API): remote workers lease opaque tasks from projects.

Every request is one write transaction composed here from the store's queries and run on the
store's writer thread, so checking access, taking a rate-limit token and leasing or releasing
happen atomically, and the reply is sent only after COMMIT. The token buckets are touched
only inside those transactions: they live on the writer thread and need no lock.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from taskd.errors import BadRequest, Forbidden, NotFound, RateLimited, Unauthorized
from taskd.log import get_logger
from taskd.store import Store
from taskd.workqueue import store as sq
from taskd.workqueue import store_projects as qp
from taskd.workqueue.model import (
    INT64_MAX,
    NS,
    NewTask,
    TokenBucket,
    task_json,
    worker_json,
)
from taskd.workqueue.projects import QueueProjects
from taskd.workqueue.releases import Releases

if TYPE_CHECKING:
    from taskd.engine.supervisor import Supervisor

log = get_logger("taskd.queue")

WORKER_CACHE = 100_000  # authenticated workers kept in memory
LOG_METHODS = {3: "error", 4: "warning", 5: "info", 7: "debug"}


@dataclass(frozen=True, slots=True)
class WorkerAuth:
    """An authenticated worker."""

    id: int
    secret_hash: bytes
    paused: bool


def digest(secret: bytes) -> bytes:
    # One sha256 is enough: the secret is 32 random bytes, nothing to brute-force.
    return hashlib.sha256(secret).digest()


def _visible(project: sqlite3.Row, access: sqlite3.Row | None) -> bool:
    """Hidden projects exist only for workers holding a grant on them (and for admins)."""
    return not project["hidden"] or (access is not None and not access["request"])


def _granted(access: sqlite3.Row | None, role: str) -> bool:
    return access is not None and not access["request"] and bool(access[role])


class QueueService(Releases):
    """Projects, workers, leases, verification, rate limits, worker logs and monitoring."""

    def __init__(
        self,
        store: Store,
        *,
        default_lease: float = 3600.0,
        snapshot_interval: float = 120.0,
        snapshot_keep: float = 400 * 3600.0,
        log_retention: float = 30 * 86400.0,
        clock: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.default_lease_ns = int(default_lease * NS)
        self.snapshot_interval = snapshot_interval
        self.snapshot_keep = snapshot_keep
        self.log_retention = log_retention
        self.clock = clock  # wall time in ns: leases are stored, so they outlive a restart
        self.monotonic = monotonic  # for the token buckets
        self._workers: dict[int, WorkerAuth] = {}
        self._worker_generation = 0
        self._limits: dict[int, tuple[TokenBucket, TokenBucket]] = {}  # writer thread only
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._planned_wake = -1  # ns; a lease expiring earlier wakes the sweeper
        self._granted_min: int | None = None  # earliest lease granted while sweeping
        self.projects = QueueProjects(self)

    # -- workers ------------------------------------------------------------------------------

    async def create_worker(self, alias: str) -> dict[str, Any]:
        """A new worker; the reply is the only place its secret ever appears."""
        secret = secrets.token_bytes(32)
        now = self.clock()
        alias = alias or "default_alias"
        wid = await self.store.write(qp.insert_worker, alias, digest(secret), now)
        return {
            "id": wid,
            "created": now // NS,
            "alias": alias,
            "secret": base64.b64encode(secret).decode(),
            "paused": False,
        }

    async def authenticate(self, worker_id: str | None, secret: str | None) -> WorkerAuth:
        """The worker named by X-Worker-ID, if X-Secret is its secret (constant-time check)."""
        if not worker_id:
            raise Unauthorized("worker id not specified")
        if not secret:
            raise Unauthorized("secret is not specified")
        try:
            wid = int(worker_id)
        except ValueError:
            wid = 0
        auth = self._workers.get(wid)
        if auth is None:
            if not 0 < wid <= INT64_MAX:
                raise Unauthorized("worker id does not match any valid worker")
            generation = self._worker_generation
            row = await self.store.read(qp.worker_credentials, wid)
            if row is None:
                raise Unauthorized("worker id does not match any valid worker")
            auth = WorkerAuth(wid, bytes(row["secret_hash"]), bool(row["paused"]))
            # A change of any worker while we read may have been missed: do not cache then.
            if generation == self._worker_generation:
                if len(self._workers) >= WORKER_CACHE:
                    self._workers.clear()
                self._workers[wid] = auth
        try:
            raw = base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if not hmac.compare_digest(digest(raw), auth.secret_hash):
            raise Unauthorized("invalid secret")
        return auth

    def _forget_worker(self, wid: int) -> None:
        self._worker_generation += 1
        self._workers.pop(wid, None)

    async def update_worker(self, worker: WorkerAuth, alias: str) -> None:
        """Rename the calling worker."""
        await self.store.write(qp.update_worker, worker.id, alias or "default_alias", None)
        self._forget_worker(worker.id)

    async def set_worker_paused(self, wid: int, paused: bool) -> None:
        """Pause a worker (it gets no tasks) or let it work again."""
        if not await self.store.write(qp.update_worker, wid, None, paused):
            raise NotFound("Worker not found")
        self._forget_worker(wid)

    async def get_worker(self, wid: int) -> dict[str, Any]:
        """A worker's public fields; 404 for an unknown id."""
        row = await self.store.read(qp.worker_by_id, wid)
        if row is None:
            raise NotFound("Worker not found")
        return worker_json(row)

    async def worker_stats(self, limit: int) -> list[dict[str, Any]]:
        """Workers with how many tasks each closed, most first."""
        rows = await self.store.read(qp.worker_stats, limit)
        return [
            {
                "alias": r["alias"],
                "closed_task_count": r["closed_task_count"],
                "paused": bool(r["paused"]),
                "id": r["id"],
            }
            for r in rows
        ]

    # -- tasks --------------------------------------------------------------------------------

    def _buckets(self, project: sqlite3.Row) -> tuple[TokenBucket, TokenBucket]:
        pair = self._limits.get(project["id"])
        if pair is None:
            now = self.monotonic()
            pair = (
                TokenBucket(project["assign_rate"], now),
                TokenBucket(project["submit_rate"], now),
            )
            self._limits[project["id"]] = pair
        return pair

    def forget_limits(self, pid: int) -> None:
        """Drop a project's token buckets (writer thread: inside a transaction function)."""
        self._limits.pop(pid, None)

    async def submit(self, worker: WorkerAuth, project: int, tasks: list[NewTask]) -> None:
        """Store every task or none (one transaction); needs SUBMIT access on the project."""
        await self.store.write(self.submit_tx, worker.id, project, tasks)

    def submit_tx(
        self, db: sqlite3.Connection, worker: int, pid: int, tasks: list[NewTask]
    ) -> None:
        project, access = qp.project_and_access(db, pid, worker)
        if project is None or not _visible(project, access):
            raise NotFound("Project not found")
        if not _granted(access, "submit"):
            raise Forbidden(
                "You may not submit tasks to this project: "
                "ask for SUBMIT access with /project/request_access"
            )
        bucket = self._buckets(project)[1]
        delay = bucket.take(len(tasks), self.monotonic())
        if delay:
            raise RateLimited("Too many requests", rate_limit_delay=delay)
        duplicate = sq.insert_tasks(db, pid, [t.row() for t in tasks], worker, self.clock())
        if duplicate is not None:
            # 400, and the token stays spent: both as task_tracker answers a duplicate hash.
            where = f"requests[{duplicate}]: " if len(tasks) > 1 else ""
            raise BadRequest(
                f"{where}a task with hash64 {tasks[duplicate].hash64} already "
                f"exists in project {pid}; nothing was stored"
            )

    async def lease(self, worker: WorkerAuth, project: int) -> dict[str, Any] | None:
        """The project's next task, leased to ``worker``; None when there is none for it."""
        tasks = await self.lease_many(worker, project, 1)
        return tasks[0] if tasks else None

    async def lease_many(
        self, worker: WorkerAuth, project: int, count: int
    ) -> list[dict[str, Any]]:
        """Up to ``count`` of the project's next tasks, leased to ``worker`` in one commit.

        A batch costs ``count`` tokens of the project's assign limiter, as a bulk submit does.
        """
        if worker.paused:
            raise BadRequest("A manager has paused you")
        leased = await self.store.write(self._lease_tx, worker.id, project, count)
        if leased is None:
            return []
        tasks, project_row = leased
        expiry = min(task["lease_expires_at"] for task in tasks)
        if self._granted_min is None or expiry < self._granted_min:
            self._granted_min = expiry
        if expiry < self._planned_wake:
            self._wake.set()
        return [task_json(task, project_row) for task in tasks]

    def _lease_tx(self, db: sqlite3.Connection, worker: int, pid: int, count: int = 1) -> Any:
        project = qp.project_by_id(db, pid)
        access = None
        if project is not None and not project["public"]:
            access = qp.access_of(db, pid, worker)
        if project is None or not _visible(project, access):
            raise NotFound("Project not found")
        if not project["public"] and not _granted(access, "assign"):
            raise Forbidden(
                "You may not take tasks from this project: "
                "ask for ASSIGN access with /project/request_access"
            )
        bucket = self._buckets(project)[0]
        delay = bucket.take(count, self.monotonic())
        if delay:
            raise RateLimited("Too many requests", rate_limit_delay=delay)
        if project["paused"]:
            return None  # nothing to assign; the token is spent, as in task_tracker
        now = self.clock()
        sq.free_expired_leases(db, now)  # an expired lease is free, whether swept yet or not
        tasks = []
        for _ in range(count):
            task = sq.lease_next(db, pid, worker, now, self.default_lease_ns)
            if task is None:
                break  # the tokens stay spent, as in task_tracker
            tasks.append(task)
        return (tasks, project) if tasks else None

    # -- worker logs --------------------------------------------------------------------------

    async def log(
        self, worker: WorkerAuth, level: int, scope: str, message: str, timestamp: int
    ) -> None:
        """Store a worker's log entry (and write it to taskd's own log)."""
        data = orjson.dumps({"scope": scope, "worker": worker.id}).decode()
        await self.store.write(sq.insert_log, level, message, timestamp, data, self.clock())
        getattr(log, LOG_METHODS.get(level, "info"))(
            "worker log", worker=worker.id, scope=scope, message=message, timestamp=timestamp
        )

    async def logs(self, level: int, since: int, limit: int) -> list[dict[str, Any]]:
        """Log entries of exactly ``level`` stamped after ``since``, oldest first."""
        rows = await self.store.read(sq.logs, level, since, limit)
        return [dict(row) for row in rows]

    # -- background: lease expiry and monitoring snapshots ------------------------------------

    async def start(self, supervisor: Supervisor | None = None) -> None:
        """Start the background task that sweeps leases and takes snapshots (supervised: a
        crash restarts it)."""
        if supervisor is not None:
            self._task = supervisor.spawn("queue-maintenance", self._maintain)
        else:
            self._task = asyncio.create_task(self._maintain(), name="taskd-queue-maintenance")

    async def stop(self) -> None:
        """Stop the background task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def sweep(self) -> int | None:
        """Free every expired lease; return when the next one expires (ns), if any lease."""
        return await self.store.write(self._sweep_tx)

    def _sweep_tx(self, db: sqlite3.Connection) -> int | None:
        sq.free_expired_leases(db, self.clock())
        return sq.next_lease_expiry(db)

    async def snapshot(self) -> int:
        """Record every project's counts now; drop snapshots and worker logs past keeping."""
        return await self.store.write(self._snapshot_tx)

    def _snapshot_tx(self, db: sqlite3.Connection) -> int:
        now = self.clock()
        sq.prune_logs(db, now - int(self.log_retention * NS))
        at = now // NS
        return sq.take_snapshots(db, at, at - int(self.snapshot_keep))

    async def _maintain(self) -> None:
        """Sleep until the next lease expires or a snapshot is due; never poll."""
        loop = asyncio.get_running_loop()
        next_snapshot = loop.time() + self.snapshot_interval
        while True:
            self._planned_wake = -1  # leases granted meanwhile are folded in below
            self._granted_min = None
            wait = self.snapshot_interval
            try:
                expiry = await self.sweep()
                if loop.time() >= next_snapshot:
                    await self.snapshot()
                    next_snapshot = loop.time() + self.snapshot_interval
                wait = next_snapshot - loop.time()
            except Exception:
                log.exception("work queue maintenance failed; trying again in a second")
                expiry, wait = None, 1.0
            soonest = min((e for e in (expiry, self._granted_min) if e is not None), default=None)
            now = self.clock()
            if soonest is not None:
                wait = min(wait, (soonest - now) / NS + 0.001)
            wait = max(wait, 0.01)
            self._planned_wake = now + int(wait * NS)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
