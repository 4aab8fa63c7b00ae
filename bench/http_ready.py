"""HTTP: ``GET /ready`` requests/s of ``taskd serve`` on one core, beside a bare aiohttp app.

The server is pinned to core 0 and the load generator to core 1: ``wrk`` when installed
(``apt-get install wrk``), else an aiohttp client in another process (which needs more CPU
than wrk per request, so it may be the limit; the JSON says which generator ran).

    python -m bench.http_ready URL SECONDS CONNECTIONS    # the aiohttp load generator alone
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import ROOT, Daemon, Row, bare_app, free_port, stop

CONNECTIONS = 64


def pin(pid: int, core: int) -> None:
    if hasattr(os, "sched_setaffinity") and core in os.sched_getaffinity(0):
        os.sched_setaffinity(pid, {core})


def load(url: str, seconds: float) -> tuple[float, str]:
    """Requests/s against ``url`` for ``seconds``; and which generator measured it."""
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    pinned = ["taskset", "-c", "1"] if 1 in cores and shutil.which("taskset") else []
    if shutil.which("wrk"):
        cmd = [*pinned, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", url]
        out = subprocess.run(
            cmd, capture_output=True, text=True, check=True, timeout=seconds + 30
        ).stdout
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if errors:
            raise RuntimeError(f"wrk saw {errors[1]} failed responses")
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]), "wrk"
    cmd = [*pinned, sys.executable, "-m", "bench.http_ready", url, str(seconds), str(CONNECTIONS)]
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, cwd=ROOT, timeout=seconds + 30
    ).stdout
    return float(out.split()[-1]), "aiohttp client"


async def client_load(url: str, seconds: float, connections: int) -> float:
    done = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        end = time.perf_counter() + seconds

        async def one() -> None:
            nonlocal done
            while time.perf_counter() < end:
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"GET {url}: {resp.status}")
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(connections)))
        return done / (time.perf_counter() - t0)


def measure(port: int, pid: int, seconds: float) -> tuple[float, str]:
    pin(pid, 0)
    url = f"http://127.0.0.1:{port}/ready"
    load(url, 1.0)  # warm up
    return load(url, seconds)


def run(quick: bool) -> list[Row]:
    seconds = 3.0 if quick else 10.0
    port = free_port()
    bare = bare_app(port)
    try:
        base, _ = measure(port, bare.pid, seconds)
    finally:
        stop(bare)
    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp, Daemon(Path(tmp) / "h.db") as d:
        d.start()
        rps, generator = measure(d.port, d.pid, seconds)
    return [
        Row(
            "http_ready",
            "HTTP GET /ready, one server core",
            rps,
            "req/s",
            5000,
            ">=",
            baseline=base,
            baseline_unit="req/s",
            baseline_what="bare aiohttp app, same load",
            detail={
                "generator": generator,
                "connections": CONNECTIONS,
                "seconds": seconds,
                "of_baseline_percent": 100 * rps / base,
            },
        )
    ]


if __name__ == "__main__":
    print(asyncio.run(client_load(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))))
