"""Watching Swarm tasks: their states (one shared listing loop) and their output streams.

Swarm's event stream says nothing about tasks, so their states are listed: one loop asks for
the tasks of every watched service at once, every ``POLL_INTERVAL`` seconds, and only while
someone waits. Output comes from the task log endpoint, which works whatever node ran it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiodocker
import aiohttp

from taskd.runners.base import OutputSink
from taskd.runners.dockerlogs import read_frames

POLL_INTERVAL = 0.5
FOLLOW_RETRIES = 3
RETRY_DELAY = 1.0


class TaskWatch:
    """Lists the tasks of watched services for whoever waits on them."""

    def __init__(self, query: Callable[..., Awaitable[Any]]) -> None:
        self._query = query
        self._waiting: dict[str, list[asyncio.Future[list[dict[str, Any]] | None]]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def of(self, service: str) -> list[dict[str, Any]] | None:
        """The service's tasks at the next listing, oldest first; None if it is gone."""
        future: asyncio.Future[list[dict[str, Any]] | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.setdefault(service, []).append(future)
        if self._loop_task is None or self._loop_task.done():
            loop = asyncio.get_running_loop()
            self._loop_task = loop.create_task(self._loop(), name="swarm-tasks")
        return await future

    def poke(self, service: str) -> None:
        """List again now (a kill wants its waiter to see the removal soon)."""
        self._wake.set()

    async def _loop(self) -> None:
        while self._waiting:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL)
            self._wake.clear()
            waiting, self._waiting = self._waiting, {}
            waiting = {s: [f for f in fs if not f.done()] for s, fs in waiting.items()}
            waiting = {s: fs for s, fs in waiting.items() if fs}
            if not waiting:
                continue
            try:
                found = await self._list(list(waiting))
            except Exception as exc:
                for futures in waiting.values():
                    for f in futures:
                        if not f.done():
                            f.set_exception(exc)
                continue
            for service, futures in waiting.items():
                for f in futures:
                    if not f.done():
                        f.set_result(found.get(service))

    async def _list(self, services: list[str]) -> dict[str, list[dict[str, Any]] | None]:
        try:
            tasks = await self._tasks(services)
        except aiodocker.DockerError as exc:
            if exc.status != 404 or len(services) == 1:
                if exc.status == 404:
                    return {services[0]: None}
                raise
            # One of them is gone, and the engine refuses the whole listing: ask one by one.
            out: dict[str, list[dict[str, Any]] | None] = {}
            for service in services:
                out.update(await self._list([service]))
            return out
        by_service: dict[str, list[dict[str, Any]] | None] = {s: [] for s in services}
        for task in sorted(tasks, key=lambda t: t.get("CreatedAt", "")):
            found = by_service.get(task.get("ServiceID", ""))
            if found is not None:
                found.append(task)
        return by_service

    async def _tasks(self, services: list[str]) -> list[dict[str, Any]]:
        filters = json.dumps({"service": services})
        return await self._query("tasks", params={"filters": filters})

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None


class TaskLog:
    """One output stream of a Swarm task, copied into the sink exactly once.

    The engine replays a task's stream from its beginning on every request, so the bytes
    before ``delivered`` (what the sink already holds, also after a taskd restart) are
    counted and dropped: neither gaps nor repeats.
    """

    def __init__(self, request: Callable[..., Any], task_id: str, stream: str,
                 sink: OutputSink, delivered: int) -> None:  # fmt: skip
        self._request = request
        self.task_id = task_id
        self.stream = stream
        self.sink = sink
        self.delivered = max(0, delivered)
        self.position = 0

    async def follow(self) -> None:
        """Copy the stream as the task prints it; runs until cancelled."""
        failures = 0
        while True:
            before = self.delivered
            with contextlib.suppress(aiodocker.DockerError, aiohttp.ClientError, OSError):
                await self._read(follow=True)
            failures = 0 if self.delivered > before else failures + 1
            if failures > FOLLOW_RETRIES:
                return  # the final full read after the end still copies everything
            await asyncio.sleep(RETRY_DELAY)

    async def read_all(self) -> None:
        """Copy the whole stream as it is now, without following."""
        await self._read(follow=False)

    async def _read(self, *, follow: bool) -> None:
        self.position = 0
        params = {self.stream: "1", "follow": "1" if follow else "0"}
        async with self._request(f"tasks/{self.task_id}/logs", params) as response:
            if response.status >= 400:
                raise aiodocker.DockerError(response.status, {"message": await response.text()})
            await read_frames(response, self._feed)

    def _feed(self, data: bytes) -> None:
        end = self.position + len(data)
        if end > self.delivered:
            self.sink.write(self.stream, data[max(0, self.delivered - self.position) :])
            self.delivered = end
        self.position = end
