"""Benchmark of the work queue over real HTTP with durable commits.

Starts ``python -m taskd serve`` on a fresh database and a free port, then drives it from
client processes (so the server has its own process) that speak keep-alive HTTP/1.1 directly,
all starting at the same instant:

- single submits/s: many concurrent clients, one task per request;
- bulk submits/s: tasks a second through ``/task/bulk_submit`` (1,000 per request);
- lease+release cycles/s: 16 workers draining a project (GET /task/get + POST /task/release);
- the same with batch leases (``GET /task/get/{project}?count=N``, then N releases), apart;
- the same with batch leases and one batch release of their N results
  (``POST /task/bulk_release``), apart;
- sequential submits/s: one client, one keep-alive connection, one request after the other.

Prints a table and, with ``--json PATH``, writes the figures as JSON.

    python bench/bench_queue.py --json bench-queue.json

``BENCH_SERVER=script.py`` runs ``python script.py PORT DB`` as the server instead (a profiling
wrapper, for instance).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ADMIN = "bench-admin-token"
TARGETS = {
    "single_submits_per_s": 1500,
    "bulk_tasks_per_s": 10_000,
    "cycles_per_s": 1000,
    "batch_cycles_per_s": 6500,
    "batch_release_cycles_per_s": 6500,
    "sequential_submits_per_s": 4000,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path, port: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "taskd",
        "serve",
        "--db",
        str(db),
        "--port",
        str(port),
        "--admin-token",
        ADMIN,
        "--log-level",
        "warning",
    ]
    if os.environ.get("BENCH_SERVER"):  # e.g. a profiling wrapper taking PORT DB
        cmd = [sys.executable, os.environ["BENCH_SERVER"], str(port), str(db)]
    server = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parent.parent)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"taskd serve exited with {server.returncode}") from None
            time.sleep(0.1)
    server.kill()
    raise SystemExit("taskd serve did not start listening within 30 s")


async def call(session, method: str, path: str, body=None, headers=None) -> dict:
    async with session.request(method, path, json=body, headers=headers) as resp:
        reply = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"{method} {path}: {resp.status} {reply}")
        return reply


async def prepare(base: str, name: str, workers: int) -> tuple[int, list[dict]]:
    """A public project and ``workers`` workers allowed to submit to it."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession(base) as session:
        pid = (
            await call(session, "POST", "/project/create", {"name": name, "public": True}, admin)
        )["content"]["id"]
        creds = []
        for i in range(workers):
            w = (await call(session, "POST", "/worker/create", {"alias": f"b{i}"}, admin))[
                "content"
            ]
            headers = {"X-Worker-ID": str(w["worker"]["id"]), "X-Secret": w["worker"]["secret"]}
            await call(
                session,
                "POST",
                "/project/request_access",
                {"project": pid, "assign": True, "submit": True},
                headers,
            )
            await call(
                session, "POST", f"/project/accept_request/{pid}/{w['worker']['id']}", headers=admin
            )
            creds.append(headers)
    return pid, creds


# -- the client side: each function runs in a client process and times itself ---------------


class Connection:
    """One keep-alive HTTP/1.1 connection over asyncio streams.

    A lean load generator: an HTTP client library spends more CPU per request than the server
    does, and on two cores the benchmark would mostly measure its own client.
    """

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        self.host, port = base.removeprefix("http://").split(":")
        self.port = int(port)
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        self.writer.close()
        await self.writer.wait_closed()

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, dict]:
        self.writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.extra}"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        reply = json.loads(await self.reader.readexactly(length))
        if status != 200:
            raise RuntimeError(f"{method} {path}: {status} {reply}")
        return status, reply


async def _timed(base, creds, start_at, clients, run) -> tuple[float, float]:
    """Open ``clients`` connections, wait for ``start_at``, run ``run(conn)`` on each at once.

    Returns when the work really began and ended, in this process.
    """
    conns = [Connection(base, creds[i % len(creds)]) for i in range(clients)]
    for conn in conns:
        await conn.__aenter__()
    await asyncio.sleep(max(0.0, start_at - time.time()))
    began = time.time()
    try:
        await asyncio.gather(*(run(conn) for conn in conns))
    finally:
        for conn in conns:
            await conn.__aexit__()
    return began, time.time()


async def _submits(base, pid, creds, count, concurrency, start_at) -> tuple[float, float, int]:
    numbers = iter(range(count))

    async def client(conn):
        for i in numbers:
            body = {"project": pid, "recipe": f"task {i}", "priority": i % 5}
            await conn.request("POST", "/task/submit", json.dumps(body).encode())

    return (*await _timed(base, creds, start_at, concurrency, client), count)


async def _bulks(base, pid, creds, count, size, concurrency, start_at):
    batches = iter(range(count))
    payloads = [
        json.dumps(
            {
                "requests": [
                    {"project": pid, "recipe": f"bulk {b}-{i}", "priority": i % 5}
                    for i in range(size)
                ]
            }
        ).encode()
        for b in range(count)
    ]

    async def client(conn):
        for b in batches:
            await conn.request("POST", "/task/bulk_submit", payloads[b])

    return (*await _timed(base, creds, start_at, concurrency, client), count * size)


async def _cycles(base, pid, creds, start_at) -> tuple[float, float, int]:
    done = 0

    async def worker(conn):
        nonlocal done
        while True:
            _, reply = await conn.request("GET", f"/task/get/{pid}")
            if not reply["ok"]:
                return
            body = {"task_id": reply["content"]["task"]["id"], "result": 0}
            _, released = await conn.request("POST", "/task/release", json.dumps(body).encode())
            assert released["content"]["updated"], released
            done += 1

    return (*await _timed(base, creds, start_at, len(creds), worker), done)


async def _batch_cycles(base, pid, creds, batch, start_at, bulk=False) -> tuple[float, float, int]:
    """Workers lease ``batch`` tasks at a time, then release them one request each, or all in
    one ``/task/bulk_release`` with ``bulk``."""
    done = 0

    async def worker(conn):
        nonlocal done
        while True:
            _, reply = await conn.request("GET", f"/task/get/{pid}?count={batch}")
            if not reply["ok"]:
                return
            tasks = reply["content"]["tasks"]
            if bulk:
                body = {"releases": [{"task_id": t["id"], "result": 0} for t in tasks]}
                _, released = await conn.request(
                    "POST", "/task/bulk_release", json.dumps(body).encode()
                )
                assert all(r["updated"] for r in released["content"]["results"]), released
                done += len(tasks)
                continue
            for task in tasks:
                body = {"task_id": task["id"], "result": 0}
                _, released = await conn.request("POST", "/task/release", json.dumps(body).encode())
                assert released["content"]["updated"], released
                done += 1

    return (*await _timed(base, creds, start_at, len(creds), worker), done)


def _run(job: tuple) -> tuple[float, float, int]:
    fn, args = job
    return asyncio.run(fn(*args))


def measure(jobs: list[tuple]) -> tuple[float, float]:
    """Run one job per client process, started together; return (operations, seconds)."""
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        results = pool.map(_run, jobs)
    began = min(r[0] for r in results)
    ended = max(r[1] for r in results)
    return sum(r[2] for r in results), ended - began


def split(items: list, parts: int) -> list[list]:
    return [items[i::parts] for i in range(parts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--procs", type=int, default=1, help="client processes")
    parser.add_argument("--workers", type=int, default=16, help="lease+release workers")
    parser.add_argument("--submits", type=int, default=10_000, help="single submits")
    parser.add_argument("--concurrency", type=int, default=32, help="single-submit clients")
    parser.add_argument("--bulks", type=int, default=60, help="bulk requests")
    parser.add_argument("--bulk-size", type=int, default=1000, help="tasks per bulk request")
    parser.add_argument("--cycles", type=int, default=10_000, help="tasks to lease and release")
    parser.add_argument("--batch", type=int, default=16, help="tasks per batch lease")
    parser.add_argument("--sequential", type=int, default=5000, help="submits from one client")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(Path(tmp) / "bench.db", port)
        try:
            figures = run(base, args)
        finally:
            server.terminate()
            server.wait(timeout=30)
    figures["cpus"] = os.cpu_count()
    figures["client_processes"] = args.procs
    width = max(len(k) for k in TARGETS)
    print(f"\n{'measure':<{width}}  {'per second':>12}  {'target':>8}")
    for key, target in TARGETS.items():
        mark = "ok" if figures[key] >= target else "BELOW"
        print(f"{key:<{width}}  {figures[key]:>12,.0f}  {target:>8,}  {mark}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def run(base: str, args: argparse.Namespace) -> dict:
    procs = args.procs
    figures: dict = {}

    pid, creds = asyncio.run(prepare(base, "single", 8))
    per_proc = args.submits // procs
    start_at = time.time() + 1.0
    ops, secs = measure(
        [
            (_submits, (base, pid, creds, per_proc, args.concurrency // procs, start_at))
            for _ in range(procs)
        ]
    )
    figures["single_submits_per_s"] = ops / secs

    pid, creds = asyncio.run(prepare(base, "bulk", 4))
    start_at = time.time() + 2.0
    ops, secs = measure(
        [
            (_bulks, (base, pid, creds, args.bulks // procs, args.bulk_size, 2, start_at))
            for _ in range(procs)
        ]
    )
    figures["bulk_tasks_per_s"] = ops / secs

    pid, creds = asyncio.run(prepare(base, "cycles", args.workers))
    asyncio.run(_fill(base, pid, creds[0], args.cycles))
    start_at = time.time() + 1.0
    ops, secs = measure([(_cycles, (base, pid, part, start_at)) for part in split(creds, procs)])
    assert ops == args.cycles, (ops, args.cycles)
    figures["cycles_per_s"] = ops / secs
    figures["workers"] = args.workers

    pid, creds = asyncio.run(prepare(base, "batch", args.workers))
    asyncio.run(_fill(base, pid, creds[0], args.cycles))
    start_at = time.time() + 1.0
    ops, secs = measure(
        [(_batch_cycles, (base, pid, part, args.batch, start_at)) for part in split(creds, procs)]
    )
    assert ops == args.cycles, (ops, args.cycles)
    figures["batch_cycles_per_s"] = ops / secs
    figures["batch"] = args.batch

    pid, creds = asyncio.run(prepare(base, "batch-release", args.workers))
    asyncio.run(_fill(base, pid, creds[0], args.cycles))
    start_at = time.time() + 1.0
    ops, secs = measure(
        [
            (_batch_cycles, (base, pid, part, args.batch, start_at, True))
            for part in split(creds, procs)
        ]
    )
    assert ops == args.cycles, (ops, args.cycles)
    figures["batch_release_cycles_per_s"] = ops / secs

    pid, creds = asyncio.run(prepare(base, "sequential", 1))
    start_at = time.time() + 1.0
    ops, secs = measure([(_submits, (base, pid, creds, args.sequential, 1, start_at))])
    figures["sequential_submits_per_s"] = ops / secs
    return figures


async def _fill(base: str, pid: int, headers: dict, count: int) -> None:
    async with aiohttp.ClientSession(base) as session:
        for start in range(0, count, 1000):
            requests = [
                {"project": pid, "recipe": f"cycle {i}"}
                for i in range(start, min(count, start + 1000))
            ]
            await call(session, "POST", "/task/bulk_submit", {"requests": requests}, headers)


if __name__ == "__main__":
    main()
