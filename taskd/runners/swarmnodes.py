"""What a Docker Swarm can take: its nodes' CPUs and memory, followed as nodes come and go.

Swarm jobs are accounted against the swarm, not against the host taskd runs on. The totals
are the sum over nodes that are ready and active; a job asking for more than the largest such
node could never be placed and is refused at submission. Node changes arrive on the engine's
event stream (``type=node``), so nothing polls while the cluster stays as it is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

from taskd.engine.capacity import Capacity
from taskd.log import get_logger
from taskd.models import JobSpec

log = get_logger("taskd.swarm")

# Between two reconnects of the event stream (a manager restarting, the engine away).
RECONNECT_DELAY = 5.0
REFRESH_TIMEOUT = 10.0


def _no_pins(job: JobSpec) -> JobSpec:
    # Whole cores of one host mean nothing on a cluster: Swarm places CPU shares instead.
    return dataclasses.replace(job, pin_cores=False) if job.pin_cores else job


class SwarmCapacity(Capacity):
    """The slots, CPUs and memory of the swarm's usable nodes."""

    def __init__(self, slots: int) -> None:
        super().__init__(slots, 0.0, 0)
        self.known = False  # False until the node list was read once
        self.why_unknown = "the swarm's nodes have not been read yet"
        self.largest_cpus = 0.0
        self.largest_memory_mb = 0
        self.nodes = 0

    def update(self, nodes: list[dict[str, Any]]) -> None:
        """Take the totals from a node list as the engine returns it."""
        usable = [
            n for n in nodes
            if n.get("Status", {}).get("State") == "ready"
            and n.get("Spec", {}).get("Availability") == "active"
        ]  # fmt: skip
        cpus = [n["Description"]["Resources"].get("NanoCPUs", 0) / 1e9 for n in usable]
        memory = [n["Description"]["Resources"].get("MemoryBytes", 0) >> 20 for n in usable]
        self.cpus, self.memory_mb = float(sum(cpus)), int(sum(memory))
        self.largest_cpus = max(cpus, default=0.0)
        self.largest_memory_mb = max(memory, default=0)
        if self.nodes != len(usable) or not self.known:
            log.info("swarm nodes", usable=len(usable), cpus=self.cpus, memory_mb=self.memory_mb)
        self.nodes = len(usable)
        self.known = True

    def refusal(self, job: JobSpec) -> str | None:
        if not self.known:
            return f"the swarm runner cannot place jobs: {self.why_unknown}"
        if self.nodes == 0:
            return "the swarm has no ready and active node"
        if job.cpus > self.largest_cpus + 1e-9:
            return (f"it asks for {job.cpus:g} CPUs and the largest swarm node offers "
                    f"{self.largest_cpus:g}")  # fmt: skip
        if job.memory_mb > self.largest_memory_mb:
            return (f"it asks for {job.memory_mb} MB and the largest swarm node offers "
                    f"{self.largest_memory_mb} MB")  # fmt: skip
        return None

    def fits(self, job: JobSpec, reserved: JobSpec | None = None) -> bool:
        return super().fits(_no_pins(job), _no_pins(reserved) if reserved else None)

    def take(self, job: JobSpec) -> tuple[int, ...]:
        return super().take(_no_pins(job))

    def give(self, job: JobSpec, cores: tuple[int, ...]) -> None:
        super().give(_no_pins(job), ())


class NodeWatch:
    """Keeps a ``SwarmCapacity`` current: reads the nodes, then again on every node event."""

    def __init__(
        self,
        pool: SwarmCapacity,
        query: Callable[..., Awaitable[Any]],
        events: Callable[[dict[str, str]], Any],
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.pool = pool
        self._query = query  # (path) -> parsed JSON
        self._events = events  # (params) -> async context manager yielding a response
        self.on_change = on_change
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> bool:
        """Read the node list now; False (with the reason kept) when it cannot be read."""
        try:
            # Bounded: taskd's start waits for this, and a stuck engine must not hold it up.
            async with asyncio.timeout(REFRESH_TIMEOUT):
                nodes = await self._query("nodes")
        except Exception as exc:
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            self.pool.known = False
            self.pool.why_unknown = f"the Docker engine is not a swarm manager ({message})"
            return False
        self.pool.update(nodes)
        if self.on_change is not None:
            self.on_change()
        return True

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow(), name="swarm-nodes")

    async def _follow(self) -> None:
        params = {"filters": json.dumps({"type": ["node"]})}
        while True:
            try:
                async with self._events(params) as response:
                    await self.refresh()  # what changed before the stream was open
                    async for _ in response.content:
                        await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("swarm node events broke off", error=str(exc))
            await asyncio.sleep(RECONNECT_DELAY)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
