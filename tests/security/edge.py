"""Tools of the edge tests: a real ``taskd serve``, and a real client measured while it is attacked.

The attacks run over loopback only and are bounded in time. While one runs, a client that
opens a fresh connection for every request asks ``/ready`` and an authorised API route; the
tests check that these keep answering quickly (p99 under 100 ms): a behaviour check that the
attack starves nobody, not a benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tests.server import TOKEN, Server

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
P99_LIMIT = 0.100
MIN_SAMPLES = 100


@dataclass
class Probe:
    """Latencies of a real client's requests, each on a new connection."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def p99(self) -> float:
        """The nearest-rank 99th percentile: one request in a hundred may be slower."""
        ordered = sorted(self.latencies)
        return ordered[math.ceil(len(ordered) * 0.99) - 1]

    def check(self) -> None:
        assert not self.failures, self.failures[:5]
        assert len(self.latencies) >= MIN_SAMPLES, "the probe barely ran"
        assert self.p99() < P99_LIMIT, f"p99 {self.p99() * 1000:.1f} ms over {len(self.latencies)}"


# The probe runs in its own process, so the attack's client side (this test's event loop,
# busy opening sockets) does not slow it down: what it measures is the server alone.
PROBE = """
import asyncio, json, sys, threading, time
import aiohttp

url, token, every = sys.argv[1], sys.argv[2], float(sys.argv[3])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

async def main():
    latencies, failures, i = [], [], 0
    paths = [("/ready", {}), ("/api/process_definitions", {"Authorization": "Bearer " + token})]
    timeout = aiohttp.ClientTimeout(total=5)
    print("ready", flush=True)
    while not stop.is_set() or len(latencies) + len(failures) < 100:
        path, headers = paths[i % 2]
        i += 1
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            t0 = time.perf_counter()
            try:
                async with http.get(url + path, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        failures.append(f"{path}: {resp.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures.append(f"{path}: {exc!r}")
            else:
                latencies.append(time.perf_counter() - t0)
        await asyncio.sleep(every)
    print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)

asyncio.run(main())
"""


@contextlib.asynccontextmanager
async def probing(srv: Server, every: float = 0.01) -> AsyncIterator[Probe]:
    """Ask ``/ready`` and ``GET /api/process_definitions`` over and over until the block ends.

    Each request opens a new connection, as a new client would; at least 100 are made.
    """
    probe = Probe()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PROBE, srv.url, TOKEN, str(every),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"ready"
        yield probe
    finally:
        proc.stdin.close()
        out = await asyncio.wait_for(proc.stdout.read(), 60)
        await proc.wait()
    found = json.loads(out)
    probe.latencies, probe.failures = found["latencies"], found["failures"]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def started(tmp_path, *args: str) -> Server:
    srv = Server(tmp_path, *args)
    await srv.start()
    return srv
