"""Reading a container's output: each stream copied into the sink exactly once, across broken
connections and taskd restarts (used by the docker runner)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import aiohttp

from taskd.runners.base import OutputSink
from taskd.runners.dockerengine import API_ERRORS, is_missing

if TYPE_CHECKING:
    from taskd.runners.docker import DockerRunner

# A request (a wait, a log read) that keeps failing is tried this often, this far apart.
WAIT_RETRIES = 3
RETRY_DELAY = 1.0


async def read_frames(response: aiohttp.ClientResponse, feed: Callable[[bytes], None]) -> None:
    """Hand each entry of the engine's multiplexed log stream to ``feed``.

    Frames: an 8-byte header (stream, 3 zero bytes, big-endian length), then the entry.
    """
    buffer = bytearray()
    async for chunk in response.content.iter_any():
        buffer += chunk
        while len(buffer) >= 8:
            end = 8 + int.from_bytes(buffer[4:8], "big")
            if len(buffer) < end:
                break
            feed(bytes(buffer[8:end]))
            del buffer[:end]
    if buffer:
        raise aiohttp.ClientPayloadError("log stream ended inside a frame")


class ContainerLog:
    """One output stream of a container, copied into the sink exactly once.

    The engine replays a stream from its beginning on every request, so the bytes before
    ``delivered`` (what the sink already has) are counted and dropped: re-reading after a
    broken connection or a taskd restart gives neither duplicates nor gaps. Entries are read
    with their timestamps so that a finished follow can be completed from where it stopped.
    """

    def __init__(self, runner: DockerRunner, container_id: str, stream: str, sink: OutputSink,
                 delivered: int) -> None:  # fmt: skip
        self.runner = runner
        self.container_id = container_id
        self.stream = stream
        self.sink = sink
        self.delivered = delivered
        self.position = 0  # bytes of the stream read so far
        self.last_ts = b""  # timestamp of the last entry read ...
        self.same_ts = 0  # ... and how many entries read carry it
        self._skip = 0  # entries at ``last_ts`` a catch-up read gets again

    async def follow(self) -> None:
        """Copy the stream while the container runs; return once it has stopped."""
        failures = 0
        container = self.runner._client().containers.container(self.container_id)
        while True:
            before = self.delivered
            try:
                await self._read(follow=True)
                # A follow ends when the container stopped, or when the connection broke.
                running = (await container.show())["State"]["Running"]
            except API_ERRORS as exc:
                if is_missing(exc):
                    raise
                if await self.runner._engine(exc):
                    # An outage is no broken stream: read again once the engine is back.
                    await self.runner.health.wait_up()
                    continue
                running = True
            if not running:
                return
            failures = 0 if self.delivered > before else failures + 1
            if failures > WAIT_RETRIES:
                raise RuntimeError(f"the {self.stream} log stream keeps breaking")
            await asyncio.sleep(RETRY_DELAY)

    async def read_all(self) -> None:
        """Copy the whole stream as it is now, without following."""
        await self._read(follow=False)

    async def catch_up(self) -> None:
        """Copy what follows the last entry read (the engine has no byte offsets)."""
        if not self.last_ts:
            await self.read_all()
            return
        # ``since`` is inclusive: the entries of that instant already read come again.
        self._skip = self.same_ts
        await self._read(follow=False, since=unix_time(self.last_ts.decode()))

    async def _read(self, *, follow: bool, since: str | None = None) -> None:
        if since is None:
            self.position, self.last_ts, self.same_ts = 0, b"", 0
        params = {self.stream: "1", "timestamps": "1", "follow": "1" if follow else "0"}
        if since is not None:
            params["since"] = since
        path = f"containers/{self.container_id}/logs"
        async with self.runner._request(path, params=params) as response:
            await read_frames(response, self._feed)

    def _feed(self, entry: bytes) -> None:
        ts, _, data = entry.partition(b" ")  # "<RFC 3339 timestamp> <bytes>"
        if ts == self.last_ts:
            if self._skip:
                self._skip -= 1
                return
            self.same_ts += 1
        else:
            self.last_ts, self.same_ts = ts, 1
        self._skip = 0
        end = self.position + len(data)
        if end > self.delivered:
            self.sink.write(self.stream, data[max(0, self.delivered - self.position) :])
            self.delivered = end
        self.position = end


TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def unix_time(timestamp: str) -> str:
    """An RFC 3339 timestamp as "seconds.nanoseconds" since the epoch, keeping nanoseconds."""
    match = TIMESTAMP.match(timestamp)
    if match is None:
        raise ValueError(f"unexpected log timestamp {timestamp!r}")
    zone = "+00:00" if match[3] == "Z" else match[3]
    seconds = int(datetime.fromisoformat(match[1] + zone).timestamp())
    return f"{seconds}.{(match[2] or '').ljust(9, '0')}"
