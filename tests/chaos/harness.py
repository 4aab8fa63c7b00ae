"""Chaos: a mixed workload against a real ``taskd serve``, SIGKILLed at random moments.

Four kinds of clients work at once: scheduled definitions fire every second (shell and docker
tasks, with overlap ``allow``, ``wait`` and ``terminate``) and get manual triggers, Daggy DAG
runs are submitted and killed, Drove container tasks are created and killed, and two queue
workers submit, lease and release. Meanwhile taskd is SIGKILLed at random moments (a seeded
RNG), checked while it is down, and started again. With ``disk_full`` the database lives on a
small filesystem that is filled up for a few seconds after the last kill (``SQLITE_FULL`` on every
write that needs room); taskd must answer 503 meanwhile, lose nothing it acknowledged, and every
schedule must fire again afterwards. At the end the schedules are paused,
everything is let finish, and the invariants are checked from the API, the SQLite file, the
Docker engine and ``/proc``. Every answer the clients got is kept: a 2xx is an acknowledged
submission, which must be there afterwards whatever happened next.

Run it by hand with ``python -m tests.chaos.harness --kills 50 --seed 1234 [--disk-full]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import secrets
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.chaos import host
from tests.chaos.invariants import Record, check_store, readonly
from tests.chaos.jobs import DEFINITIONS, TRIGGERED, Jobs
from tests.faults import SmallDisk
from tests.server import TOKEN, Server

# Seconds after a full-disk spell in which a 503 is still a right answer: runs whose writes
# failed are being reloaded (at most the engine's REPAIR_MAX after the store takes writes).
SPELL_GRACE = 15.0


class Unreachable(Exception):
    """taskd did not take the connection (it is down): the request was never received."""


@dataclass
class Worker:
    id: int
    headers: dict[str, str]


class Chaos:
    """One chaos session on one database: workload, killer, settling and the checks."""

    def __init__(
        self, workdir: Path, seed: int, kills: int, *, max_parallel: int = 6,
        disk_full: bool = False,
    ) -> None:  # fmt: skip
        self.workdir = workdir
        self.seed = seed
        self.kills = kills
        self.rng = random.Random(seed)
        self.marker = f"chaos-{seed}-{secrets.token_hex(4)}"
        self.timeline = workdir / "timeline"
        self.jobs = Jobs(self.marker, self.timeline)
        # Local jobs write their timeline into the session's directory, which only root may
        # enter: they run as root.
        self.server = Server(workdir, "--max-parallel", str(max_parallel), "--log-level", "info",
                             "--local-user", "root")  # fmt: skip
        self.record = Record()
        self.stopping = False
        self.session: aiohttp.ClientSession | None = None
        self.project = 0
        self.workers: list[Worker] = []
        self.instance = ""
        self.started = 0.0
        self.elapsed = 0.0
        # The full-disk spell: the disk (mounted in run) and when the spell held (monotonic).
        self.disk = SmallDisk(workdir / "disk", size_mb=64) if disk_full else None
        self.spell: tuple[float, float] | None = None
        self.spell_ended_ns = 0
        self.spell_refused = 0

    # -- HTTP ---------------------------------------------------------------------------------

    async def call(
        self, method: str, path: str, route: str | None = None, **kw: Any
    ) -> tuple[int | None, Any]:
        """(status, body); (None, None) when the request was sent but no answer came back.

        Raises Unreachable when the connection was refused (taskd down): nothing was sent.
        """
        assert self.session is not None
        kw.setdefault("headers", self.server.headers)
        try:
            async with self.session.request(method, self.server.url + path, **kw) as resp:
                raw = await resp.read()
                status = resp.status
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(str(exc)) from None
        except (aiohttp.ClientError, TimeoutError, ConnectionError):
            return None, None
        key = f"{method} {route or path} {status}"
        self.record.answers[key] += 1
        if status == 503 and self.in_spell():
            self.spell_refused += 1  # the store was full: refusing is the right answer
        elif status >= 500 and not (status == 504 and path.startswith("/apis/")):
            self.record.server_errors.append(f"{key}: {raw[:300]!r}")
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    async def must(self, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
        """A request that has to succeed (set-up, settling): retried until it does."""
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = await self.call(method, path, **kw)
            except Unreachable:
                status, body = None, None
            if status == expect:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path}: {status} {body}")
            await asyncio.sleep(0.2)

    # -- set-up -------------------------------------------------------------------------------

    async def setup(self) -> None:
        for name in DEFINITIONS:
            await self.must(
                "PUT", f"/api/process_definitions/{name}", json=self.jobs.definition(name)
            )
        body = await self.must("POST", "/project/create", json={"name": "chaos", "public": False})
        self.project = body["content"]["id"]
        for alias in ("w1", "w2"):
            body = await self.must("POST", "/worker/create", json={"alias": alias})
            w = body["content"]["worker"]
            worker = Worker(w["id"], {"X-Worker-ID": str(w["id"]), "X-Secret": w["secret"]})
            self.workers.append(worker)
            await self.must(
                "POST",
                "/project/request_access",
                headers=worker.headers,
                json={"project": self.project, "assign": True, "submit": True},
            )
            await self.must("POST", f"/project/accept_request/{self.project}/{worker.id}")
        with sqlite3.connect(self.server.db) as db:
            self.instance = db.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()[
                0
            ]

    # -- the clients --------------------------------------------------------------------------

    async def pause(self, low: float, high: float) -> None:
        await asyncio.sleep(self.rng.uniform(low, high))

    async def dag_client(self) -> None:
        n = 0
        while not self.stopping:
            n += 1
            tag = f"chaos-dag-{n}"
            try:
                status, body = await self.call("POST", "/v1/dagrun", json=self.jobs.dag(tag, n))
                if status == 200:
                    self.record.dag_acked[body["runID"]] = tag
                elif status is None:
                    self.record.dag_unsure.add(tag)
                if n % 5 == 0 and self.record.dag_acked:
                    victim = self.rng.choice(list(self.record.dag_acked))
                    await self.call("DELETE", f"/v1/dagrun/{victim}", "/v1/dagrun/{runid}")
                if n % 7 == 0 and self.record.dag_acked:  # resume an ERRORED or KILLED run
                    again = self.rng.choice(list(self.record.dag_acked))
                    path = f"/v1/dagrun/{again}/state/QUEUED"
                    await self.call("PATCH", path, "/v1/dagrun/{runid}/state/{state}")
            except Unreachable:
                pass
            await self.pause(0.3, 0.9)

    async def drove_client(self) -> None:
        n = 0
        # Drove clients authenticate with HTTP Basic admin:<token>.
        basic = {"Authorization": "Basic " + base64.b64encode(f"admin:{TOKEN}".encode()).decode()}
        while not self.stopping:
            n += 1
            task_id = f"t{n}"
            try:
                status, _ = await self.call(
                    "POST",
                    "/apis/v1/tasks/operations",
                    headers=basic,
                    json=self.jobs.drove(task_id),
                )
                if status == 200:
                    self.record.drove_acked.add(task_id)
                elif status is None:
                    self.record.drove_unsure.add(task_id)
                if n % 4 == 0 and self.record.drove_acked:
                    victim = self.rng.choice(sorted(self.record.drove_acked))
                    kill = {
                        "type": "KILL",
                        "sourceAppName": "CHAOS",
                        "taskId": victim,
                        "opSpec": {"timeout": "10 seconds"},
                    }
                    await self.call("POST", "/apis/v1/tasks/operations", headers=basic, json=kill)
            except Unreachable:
                pass
            await self.pause(0.8, 1.8)

    async def trigger_client(self) -> None:
        """Manual triggers, retries of failed processes, and new versions of a definition."""
        while not self.stopping:
            name = self.rng.choice(TRIGGERED)
            try:
                status, _ = await self.call("POST", f"/api/process_definitions/{name}/trigger")
                if status == 204:
                    self.record.triggers_acked[name] += 1
                elif status is None:
                    self.record.triggers_unsure[name] += 1
                chance = self.rng.random()
                if chance < 0.3:
                    query = {"process_definition_name": "chaos-shell", "max_records": "20",
                             "allowed_statuses": "failed"}  # fmt: skip
                    status, found = await self.call("GET", "/api/processes/", params=query)
                    if status == 200 and found:
                        pid = self.rng.choice(found)["process_id"]
                        route = "/api/processes/{process_id}/retry"
                        await self.call("POST", f"/api/processes/{pid}/retry", route)
                elif chance < 0.4:
                    doc = self.jobs.definition("chaos-shell")
                    await self.call("PUT", "/api/process_definitions/chaos-shell", json=doc)
            except Unreachable:
                pass
            await self.pause(1.0, 3.0)

    async def queue_client(self, worker: Worker, index: int) -> None:
        n = 0
        while not self.stopping:
            try:
                if self.rng.random() < 0.7:
                    n += 1
                    recipe = f"q-{index}-{n}"
                    body = {
                        "project": self.project,
                        "recipe": recipe,
                        "max_assign_time": 2,
                        "max_retries": 2,
                    }
                    status, _ = await self.call(
                        "POST", "/task/submit", headers=worker.headers, json=body
                    )
                    if status == 200:
                        self.record.queue_acked.add(recipe)
                    elif status is None:
                        self.record.queue_unsure.add(recipe)
                await self.lease_and_release(worker, self.rng.uniform(0, 2.6))
            except Unreachable:
                pass
            await self.pause(0.1, 0.5)

    async def lease_and_release(self, worker: Worker, hold: float, result: int | None = None):
        """Lease the next task, hold it a while (maybe past its lease), release it; the task."""
        path = f"/task/get/{self.project}"
        status, body = await self.call("GET", path, "/task/get/{project}", headers=worker.headers)
        if status != 200 or not body["ok"]:
            return None
        self.record.leases += 1
        task = body["content"]["task"]
        await asyncio.sleep(hold)
        if result is None:
            result = self.rng.choice((0, 0, 0, 1, 2))
        release = {"task_id": task["id"], "result": result, "verification": 0}
        status, body = await self.call(
            "POST", "/task/release", headers=worker.headers, json=release
        )
        if status == 200 and body["ok"] and body["content"]["updated"] and result == 0:
            self.record.closes[task["id"]] += 1
            self.record.closer[task["id"]] = worker.id
        return task

    def in_spell(self) -> bool:
        if self.disk is None or self.spell is None:
            return False
        start, end = self.spell
        return start <= time.monotonic() <= end + SPELL_GRACE

    # -- the killer ---------------------------------------------------------------------------

    async def disk_full_spell(self) -> None:
        """Fill the database's filesystem for a few seconds, then make room again."""
        assert self.disk is not None
        self.spell = (time.monotonic(), float("inf"))
        await asyncio.to_thread(self.disk.fill, self.server.db)
        await self.pause(2.0, 4.0)
        self.disk.free()
        self.spell = (self.spell[0], time.monotonic())
        self.spell_ended_ns = time.time_ns()

    async def killer(self) -> None:
        for _ in range(self.kills):
            # Mostly a while into a life; sometimes right after the start, during recovery.
            if self.rng.random() < 0.25:
                await self.pause(0.0, 0.4)
            else:
                await self.pause(0.5, 3.0)
            self.server.kill9()
            self.record.kills += 1
            self.check_while_down()
            await self.pause(0.0, 1.2)  # down for a while: slots are missed meanwhile
            await self.server.start()
            self.record.restarts += 1
        if self.disk is not None:
            # After the last restart, so that only taskd itself can recover from it; the
            # clients keep working through it.
            await self.pause(1.0, 2.0)
            await self.disk_full_spell()
            await self.until(self.fired_since_spell, 30, "every schedule to fire again")

    def check_while_down(self) -> None:
        """The file as a crash left it: intact, and no task with two live attempts."""
        problems = []
        with contextlib.closing(readonly(self.server.db)) as db:
            if (ok := db.execute("PRAGMA integrity_check").fetchall()) != [("ok",)]:
                problems.append(f"integrity_check after kill {self.record.kills}: {ok}")
            for task_id, n in db.execute(
                "SELECT task_id, COUNT(*) FROM attempts WHERE state IN ('starting', 'running')"
                " GROUP BY task_id HAVING COUNT(*) > 1"
            ):
                problems.append(f"task {task_id} has {n} live attempts at once")
        self.record.checks_while_down += 1
        assert not problems, problems

    # -- the whole session --------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        """Work, kill, settle, check; the figures (raises AssertionError on a violation)."""
        self.started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=20)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            self.session = session
            if self.disk is not None:
                self.disk.mount()
                self.server.db = self.disk.path / "taskd.db"
            await self.server.start()
            await self.setup()
            clients = [
                asyncio.create_task(self.dag_client(), name="dag"),
                asyncio.create_task(self.drove_client(), name="drove"),
                asyncio.create_task(self.trigger_client(), name="trigger"),
                *(
                    asyncio.create_task(self.queue_client(w, i), name=f"queue-{i}")
                    for i, w in enumerate(self.workers)
                ),
            ]
            try:
                await self.killer()
            finally:
                self.stopping = True
                results = await asyncio.gather(*clients, return_exceptions=True)
            for task, result in zip(clients, results, strict=True):
                if isinstance(result, BaseException):
                    raise AssertionError(f"client {task.get_name()} failed: {result!r}")
            await self.settle()
        took = self.server.terminate()
        assert self.server.proc is not None and self.server.proc.returncode == 0, (
            f"taskd exited with {self.server.proc.returncode} on SIGTERM"
        )
        self.elapsed = time.monotonic() - self.started
        figures = self.check()
        figures["sigterm_seconds"] = round(took, 2)
        return figures

    async def settle(self) -> None:
        """Stop the schedules, let every run end, close every queue task, wait for cleanup."""
        for name in DEFINITIONS:
            await self.must("POST", f"/api/process_definitions/{name}/pause", expect=204)
        await self.until(self.all_runs_ended, 90, "every run to end")
        await self.until(self.queue_drained, 60, "the queue to drain")
        await self.until(lambda: not self.containers(), 30, "taskd's containers to be removed")
        await self.until(lambda: not self.job_processes(), 20, "job processes to end")

    async def until(self, check, within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while True:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {within}s for {what}: {self.stuck()}")
            await asyncio.sleep(0.3)

    def fired_since_spell(self) -> bool:
        """Every scheduled definition started a run by its schedule after the spell."""
        with contextlib.closing(readonly(self.server.db)) as db:
            fired = {
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT definition FROM ledger WHERE status = 'fired'"
                    " AND recorded_at > ?",
                    (self.spell_ended_ns,),
                )
            }
        return fired >= set(DEFINITIONS)

    def all_runs_ended(self) -> bool:
        with contextlib.closing(readonly(self.server.db)) as db:
            active = db.execute(
                "SELECT COUNT(*) FROM runs WHERE state NOT IN ('succeeded', 'failed', 'killed')"
            ).fetchone()[0]
            open_triggers = db.execute(
                "SELECT COUNT(*) FROM triggers WHERE run_id IS NULL"
            ).fetchone()[0]
            waiting = db.execute("SELECT COUNT(*) FROM ledger WHERE status = 'waiting'").fetchone()
        return active == 0 and open_triggers == 0 and waiting[0] == 0

    async def queue_drained(self) -> bool:
        await self.must("POST", f"/project/reset_failed_tasks/{self.project}")
        for worker in self.workers:
            while await self.lease_and_release(worker, 0, result=0) is not None:
                pass
        with contextlib.closing(readonly(self.server.db)) as db:
            return (
                db.execute("SELECT COUNT(*) FROM queue_tasks WHERE status <> 3").fetchone()[0] == 0
            )

    def stuck(self) -> str:
        with contextlib.closing(readonly(self.server.db)) as db:
            runs = db.execute(
                "SELECT id, kind, name, state FROM runs WHERE state IN ('queued', 'running')"
                " LIMIT 10"
            ).fetchall()
            tasks = db.execute(
                "SELECT t.run_id, t.name, t.state FROM tasks t JOIN runs r ON r.id = t.run_id"
                " WHERE r.state IN ('queued', 'running') LIMIT 20"
            ).fetchall()
            ledger = db.execute("SELECT * FROM ledger WHERE status = 'waiting'").fetchall()
            triggers = db.execute("SELECT * FROM triggers WHERE run_id IS NULL").fetchall()
            queue = db.execute(
                "SELECT status, COUNT(*) FROM queue_tasks GROUP BY status"
            ).fetchall()
        return (
            f"runs {runs} tasks {tasks} waiting slots {ledger} open triggers {triggers}"
            f" queue {queue} containers {self.describe_containers()}"
            f" processes {self.job_processes()}"
        )

    def containers(self) -> list[str]:
        return host.containers(self.instance)

    def describe_containers(self) -> list[str]:
        return host.describe_containers(self.instance, self.server.db)

    def job_processes(self) -> list[int]:
        """Processes (local jobs, and those inside containers) started for this session."""
        return host.processes_with(f"CHAOS_MARKER={self.marker}\0",
                                   f"TASKD_URL={self.server.url}\0")  # fmt: skip

    def cleanup(self) -> None:
        """Whatever a failed session left: the server, its containers, its job processes."""
        self.server.stop()
        if self.instance:
            ids = self.containers()
            if ids:
                subprocess.run(
                    ["docker", "rm", "-f", *ids], capture_output=True, timeout=60, check=False
                )
            if services := host.services(self.instance):
                subprocess.run(["docker", "service", "rm", *services], capture_output=True,
                               timeout=60, check=False)  # fmt: skip
        for pid in self.job_processes():
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        if self.disk is not None:
            self.disk.unmount()

    # -- the invariants -----------------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        problems: list[str] = []
        rec = self.record
        if rec.server_errors:
            problems.append(f"server errors: {rec.server_errors[:5]}")
        leftovers = self.containers()
        if leftovers:
            problems.append(f"containers of this taskd left after it stopped: {leftovers}")
        if services := host.services(self.instance):
            problems.append(f"swarm services of this taskd left after it stopped: {services}")
        processes = self.job_processes()
        if processes:
            problems.append(f"job processes left after taskd stopped: {processes}")
        with contextlib.closing(readonly(self.server.db)) as db:
            db.row_factory = sqlite3.Row
            figures = check_store(db, rec, self.timeline, problems)
        assert not problems, "\n".join(problems[:40])
        figures.update(
            {
                "seed": self.seed,
                "kills": rec.kills,
                "restarts": rec.restarts,
                "checks_while_down": rec.checks_while_down,
                "seconds": round(self.elapsed, 1),
                "leases": rec.leases,
                "queue_closes_acked": sum(rec.closes.values()),
                "answers": dict(sorted(rec.answers.items())),
            }
        )
        if self.disk is not None:
            figures["refused_while_disk_full"] = self.spell_refused
        return figures


def report(figures: dict[str, Any]) -> str:
    """The figures on one line, and every answer the clients got (route and status) on another."""
    figures = dict(figures)
    answers = figures.pop("answers", {})
    return f"chaos: {json.dumps(figures, sort_keys=True)}\nchaos answers: {json.dumps(answers)}"


async def session(
    workdir: Path, seed: int, kills: int, *, disk_full: bool = False
) -> dict[str, Any]:
    chaos = Chaos(workdir, seed, kills, disk_full=disk_full)
    spell = " and a full-disk spell" if disk_full else ""
    print(f"chaos: seed {seed}, {kills} kills{spell}, in {workdir}", flush=True)
    try:
        return await chaos.run()
    finally:
        chaos.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=random.SystemRandom().randrange(1 << 32))
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--disk-full", action="store_true",
                        help="fill the database's filesystem for a few seconds after the kills")  # fmt: skip
    args = parser.parse_args()
    workdir = args.dir or Path(f"/tmp/taskd-chaos-{args.seed}")
    workdir.mkdir(parents=True, exist_ok=True)
    figures = asyncio.run(session(workdir, args.seed, args.kills, disk_full=args.disk_full))
    print(report(figures))


if __name__ == "__main__":
    sys.exit(main())
