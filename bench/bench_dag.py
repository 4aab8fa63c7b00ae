"""Benchmark: a 10,000-task DAG through the Daggy API.

Measures, on a fresh database:

1. parse + expand of the DAG spec alone (CPU time, in this process);
2. ``POST /v1/dagrun`` round trip against a real server in a child process (accepted,
   expanded, stored and started);
3. how the API answers while the DAG is being accepted (``/ready`` and ``/v1/dagruns`` asked
   until the POST returns) and while the run goes on: latency of ``/ready``, ``/v1/dagruns``,
   a run's state, a task's state and the full run record, sampled for a few seconds;
4. ``DELETE`` of the run (every running process killed) — or, with ``--complete``, the time
   until every task has run.

Usage: ``python bench/bench_dag.py [--tasks N] [--shape layered|param|chain] [--seconds S]
[--parallel N] [--complete] [--json PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskd.dagruns import spec as dagspec

TOKEN = "bench-admin-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
WIDTH = 100  # tasks per layer of the layered shape


def make_dag(n: int, shape: str) -> dict[str, Any]:
    """A DAG of ``n`` tasks (each runs ``/bin/true``) in one of three shapes."""
    true = {"command": ["/bin/true"], "cores": "0.01", "memoryMB": "1"}
    if shape == "param":  # one task expanded n - 1 times, then a task after all of them
        return {
            "tag": "bench-param",
            "parameters": {"I": [str(i) for i in range(n - 1)]},
            "tasks": {
                "fan": {"job": {**true, "command": ["/bin/true", "{{I}}"]}},
                "join": {"job": true, "parents": ["fan"]},
            },
        }
    tasks: dict[str, Any] = {}
    for i in range(n):
        if shape == "chain":
            parents = [f"t{i - 1}"] if i else []
        else:  # layers of WIDTH tasks, each after two tasks of the layer before
            layer, pos = divmod(i, WIDTH)
            prev = (layer - 1) * WIDTH
            parents = [f"t{prev + pos}", f"t{prev + (pos + 1) % WIDTH}"] if layer else []
        tasks[f"t{i}"] = {"job": {**true, "command": ["/bin/true", str(i)]}, "parents": parents}
    return {"tag": f"bench-{shape}", "tasks": tasks}


def time_parse(body: bytes, repeat: int = 9) -> dict[str, float]:
    """CPU ms of JSON decode + parse_spec (best, median); and of parse_spec alone with the
    cyclic GC paused, which separates the work itself from collector passes over the heap."""
    with_gc, without_gc = [], []
    for _ in range(repeat):
        t0 = time.process_time()
        spec = dagspec.parse_spec(orjson.loads(body))
        with_gc.append(time.process_time() - t0)
        raw = orjson.loads(body)
        gc.disable()
        try:
            t0 = time.process_time()
            spec = dagspec.parse_spec(raw)
            without_gc.append(time.process_time() - t0)
        finally:
            gc.enable()
        del raw
    assert spec.tasks
    return {
        "best_ms": min(with_gc) * 1e3,
        "median_ms": statistics.median(with_gc) * 1e3,
        "no_gc_best_ms": min(without_gc) * 1e3,
        "no_gc_median_ms": statistics.median(without_gc) * 1e3,
    }


def serve(db: str, port: int, parallel: int) -> None:
    """The server, in a child process so its event loop is not the benchmark's."""
    from aiohttp import web

    from taskd.app import create_app
    from taskd.config import Settings

    settings = Settings(db=Path(db), port=port, admin_token=TOKEN, max_parallel=parallel,
                        docker_network="none", log_level="warning",
                        max_body_bytes=256 << 20)  # a 100,000-task DAG is over 10 MiB  # fmt: skip
    web.run_app(create_app(settings), host="127.0.0.1", port=port, print=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def timed(session: aiohttp.ClientSession, method: str, url: str, **kw: Any):
    t0 = time.perf_counter()
    async with session.request(method, url, headers=HEADERS, **kw) as resp:
        body = await resp.read()
        if resp.status >= 400:
            raise RuntimeError(f"{method} {url}: {resp.status} {body[:300]!r}")
    return time.perf_counter() - t0, orjson.loads(body) if body else None  # DELETE: no body


def summary(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1e3 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return {"n": len(ms), "p50_ms": statistics.median(ms), "p99_ms": p99, "max_ms": ms[-1]}


async def run_server_bench(args: argparse.Namespace, body: bytes) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        ctx = multiprocessing.get_context("spawn")
        proc = ctx.Process(target=serve, args=(f"{tmp}/bench.db", port, args.parallel))
        proc.start()
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(200):
                    try:
                        await timed(session, "GET", f"{base}/ready")
                        break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.05)
                return await exercise(session, base, args, body)
        finally:
            proc.terminate()
            proc.join(30)


async def exercise(
    session: aiohttp.ClientSession, base: str, args: argparse.Namespace, body: bytes
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # While the DAG is decoded, checked, expanded and stored, the rest of the API must still
    # answer: two light endpoints are asked in turn (one at a time, 20 ms apart) until the
    # POST returns.
    accepting = {"GET /ready": f"{base}/ready", "GET /v1/dagruns": f"{base}/v1/dagruns"}
    during: dict[str, list[float]] = {name: [] for name in accepting}

    async def probe_during() -> None:
        while True:
            for name, url in accepting.items():
                took, _ = await timed(session, "GET", url)
                during[name].append(took)
            await asyncio.sleep(0.02)

    prober = asyncio.create_task(probe_during())
    try:
        submit, reply = await timed(session, "POST", f"{base}/v1/dagrun", data=body)
    finally:
        prober.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await prober
    run_id = reply["runID"]
    out["submit_ms"] = submit * 1e3
    out["latency_during_submit"] = {name: summary(s) for name, s in during.items() if s}
    first = next(iter(orjson.loads(body)["tasks"]))
    task = f"{first}_0" if args.shape == "param" else first
    probes = {
        "GET /ready": f"{base}/ready",
        "GET /v1/dagruns": f"{base}/v1/dagruns",
        "GET /v1/dagrun/{id}/state": f"{base}/v1/dagrun/{run_id}/state",
        "GET .../task/{name}/state": f"{base}/v1/dagrun/{run_id}/task/{task}/state",
    }
    samples: dict[str, list[float]] = {name: [] for name in probes}
    record: list[float] = []
    started = time.perf_counter()
    deadline = started + args.seconds
    state = "RUNNING"
    while time.perf_counter() < deadline or (args.complete and state in ("QUEUED", "RUNNING")):
        for name, url in probes.items():
            took, got = await timed(session, "GET", url)
            samples[name].append(took)
            if name == "GET /v1/dagrun/{id}/state":
                state = got["state"]
        if len(record) < 3 and time.perf_counter() > started + args.seconds / 2:
            took, _ = await timed(session, "GET", f"{base}/v1/dagrun/{run_id}")
            record.append(took)
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    _, runs = await timed(session, "GET", f"{base}/v1/dagruns?all=1")
    counts = next(r for r in runs if r["runID"] == run_id)["taskCounts"]
    out["window_s"] = elapsed
    out["task_counts"] = counts
    out["tasks_done_per_s"] = counts.get("COMPLETED", 0) / elapsed
    out["latency"] = {name: summary(s) for name, s in samples.items()}
    if record:
        out["latency"]["GET /v1/dagrun/{id} (full)"] = summary(record)
    if state in ("QUEUED", "RUNNING"):
        took, _ = await timed(session, "DELETE", f"{base}/v1/dagrun/{run_id}")
        out["delete_ms"] = took * 1e3
        _, reply = await timed(session, "GET", f"{base}/v1/dagrun/{run_id}/state")
        out["state_after_delete"] = reply["state"]
    else:
        out["final_state"] = state
    return out


def print_table(result: dict[str, Any]) -> None:
    print(f"DAG: {result['tasks']} tasks, shape {result['shape']}, "
          f"max_parallel {result['parallel']}")  # fmt: skip
    print()
    print("CPU time for the spec alone; wall time for the HTTP calls.")
    print(f"{'measure':<44} {'value':>12}")
    print(f"{'-' * 44} {'-' * 12}")
    for shape, f in result["parse"].items():
        rows = [
            (f"decode+parse+expand {shape} (best)", f["best_ms"]),
            (f"decode+parse+expand {shape} (median)", f["median_ms"]),
            (f"parse+expand {shape}, GC paused (best)", f["no_gc_best_ms"]),
            (f"parse+expand {shape}, GC paused (median)", f["no_gc_median_ms"]),
        ]
        for label, ms in rows:
            print(f"{label:<44} {ms:>9.1f} ms")
    server = result["server"]
    print(f"{'POST /v1/dagrun (accepted+stored)':<44} {server['submit_ms']:>9.1f} ms")
    if "delete_ms" in server:
        print(f"{'DELETE /v1/dagrun/{id} (all killed)':<44} {server['delete_ms']:>9.1f} ms")
    print(f"{'tasks completed per second':<44} {server['tasks_done_per_s']:>12.1f}")
    print(f"{'task counts at the end':<44} {server['task_counts']}")
    for title, key in (("while it is accepted", "latency_during_submit"),
                       ("while it runs", "latency")):  # fmt: skip
        print()
        print(f"{title:<32} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for name, s in server.get(key, {}).items():
            print(f"{name:<32} {s['n']:>5} {s['p50_ms']:>8.1f} {s['p99_ms']:>8.1f} "
                  f"{s['max_ms']:>8.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--shape", choices=("layered", "param", "chain"), default="layered")
    parser.add_argument("--seconds", type=float, default=5.0, help="sampling window")
    parser.add_argument("--parallel", type=int, default=16, help="the server's max_parallel")
    parser.add_argument("--complete", action="store_true", help="wait until the run ends")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()

    bodies = {shape: orjson.dumps(make_dag(args.tasks, shape)) for shape in ("layered", "param")}
    result: dict[str, Any] = {
        "tasks": args.tasks,
        "shape": args.shape,
        "parallel": args.parallel,
        "parse": {shape: time_parse(b) for shape, b in bodies.items()},
    }
    body = bodies.get(args.shape) or orjson.dumps(make_dag(args.tasks, args.shape))
    result["server"] = asyncio.run(run_server_bench(args, body))
    print_table(result)
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
