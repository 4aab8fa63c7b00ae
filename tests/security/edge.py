"""Tools of the edge tests: a real ``taskd serve``, and a real client measured while it is attacked.

The attacks run over loopback only and are bounded in time. While one runs, a client that
opens a fresh connection for every request asks ``/ready`` and an authorised API route; the
tests check that these keep answering quickly (p99 under 100 ms): a behaviour check that the
attack starves nobody, not a benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp

from tests.server import TOKEN, Server

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
P99_LIMIT = 0.100


@dataclass
class Probe:
    """Latencies of a real client's requests, each on a new connection."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    def check(self) -> None:
        assert not self.failures, self.failures[:5]
        assert len(self.latencies) >= 40, "the probe barely ran"
        assert self.p99() < P99_LIMIT, f"p99 {self.p99() * 1000:.1f} ms over {len(self.latencies)}"


@contextlib.asynccontextmanager
async def probing(srv: Server, every: float = 0.02) -> AsyncIterator[Probe]:
    """Ask ``/ready`` and ``GET /api/process_definitions`` over and over until the block ends."""
    probe = Probe()
    stop = asyncio.Event()

    async def run() -> None:
        paths = [("/ready", {}), ("/api/process_definitions", ADMIN)]
        timeout = aiohttp.ClientTimeout(total=5)
        i = 0
        while not stop.is_set():
            path, headers = paths[i % 2]
            i += 1
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                t0 = time.perf_counter()
                try:
                    async with http.get(srv.url + path, headers=headers) as resp:
                        await resp.read()
                        if resp.status != 200:
                            probe.failures.append(f"{path}: {resp.status}")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    probe.failures.append(f"{path}: {exc!r}")
                else:
                    probe.latencies.append(time.perf_counter() - t0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    task = asyncio.create_task(run())
    try:
        yield probe
        for _ in range(100):  # enough samples for a p99 to mean something
            if len(probe.latencies) + len(probe.failures) >= 40:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def started(tmp_path, *args: str) -> Server:
    srv = Server(tmp_path, *args)
    await srv.start()
    return srv
