"""Reading a container's output: both streams in one request, each copied into the sink
exactly once, across broken connections and taskd restarts (used by the docker runner)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Mapping
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
    """Hand each entry of the engine's multiplexed log stream to ``feed``."""
    await read_muxed(response, lambda _, entry: feed(entry))


async def read_muxed(response: aiohttp.ClientResponse, feed: Callable[[int, bytes], None]) -> None:
    """Hand each entry of the engine's multiplexed log stream to ``feed`` with its stream
    (1: stdout, 2: stderr).

    Frames: an 8-byte header (stream, 3 zero bytes, big-endian length), then the entry.
    """
    buffer = bytearray()
    async for chunk in response.content.iter_any():
        buffer += chunk
        while len(buffer) >= 8:
            end = 8 + int.from_bytes(buffer[4:8], "big")
            if len(buffer) < end:
                break
            feed(buffer[0], bytes(buffer[8:end]))
            del buffer[:end]
    if buffer:
        raise aiohttp.ClientPayloadError("log stream ended inside a frame")


# How far before the last entry read a catch-up reads again when a stream had no entry yet:
# the engine stamps each stream's entries on its own, so across streams the order in the log
# can differ slightly from the order of the timestamps.
CATCH_UP_MARGIN = 2


class _Stream:
    """What has been read of one stream, so that every byte reaches the sink exactly once."""

    def __init__(self, name: str, sink: OutputSink, delivered: int) -> None:
        self.name = name
        self.sink = sink
        self.delivered = delivered
        self.position = 0  # bytes of the stream read so far
        self.last_ts = b""  # timestamp of the last entry read ...
        self.same_ts = 0  # ... and how many entries read carry it
        # While catching up: entries before this instant (and ``_skip`` entries at it) came
        # again and are dropped.
        self._floor: tuple[int, int] | None = None
        self._skip = 0

    def restart(self) -> None:
        """The next read replays the stream from its beginning."""
        self.position, self.last_ts, self.same_ts, self._floor = 0, b"", 0, None

    def resume(self) -> None:
        """The next read replays part of the stream: drop what was read already."""
        if self.last_ts:
            self._floor, self._skip = _instant(self.last_ts), self.same_ts

    def feed(self, entry: bytes) -> None:
        ts, _, data = entry.partition(b" ")  # "<RFC 3339 timestamp> <bytes>"
        if self._floor is not None:
            # One stream's entries are stamped and written in order: an entry before the
            # last one read was read, and so were the first ``same_ts`` of its instant.
            at = _instant(ts)
            if at < self._floor:
                return
            if at == self._floor and self._skip:
                self._skip -= 1
                return
            self._floor = None
        if ts == self.last_ts:
            self.same_ts += 1
        else:
            self.last_ts, self.same_ts = ts, 1
        end = self.position + len(data)
        if end > self.delivered:
            self.sink.write(self.name, data[max(0, self.delivered - self.position) :])
            self.delivered = end
        self.position = end


class ContainerLogs:
    """A container's stdout and stderr, read together in one request, copied into the sink
    exactly once.

    The engine replays the streams from their beginning on every request, so the bytes of a
    stream before its ``delivered`` (what the sink already has) are counted and dropped:
    re-reading after a broken connection or a taskd restart gives neither duplicates nor
    gaps. Entries are read with their timestamps so that a finished follow can be completed
    from where it stopped.
    """

    def __init__(self, runner: DockerRunner, container_id: str, sink: OutputSink,
                 skip: Mapping[str, int]) -> None:  # fmt: skip
        self.runner = runner
        self.container_id = container_id
        self.streams = {
            number: _Stream(name, sink, max(0, skip.get(name, 0)))
            for number, name in ((1, "stdout"), (2, "stderr"))
        }

    @property
    def position(self) -> int:
        """Bytes read so far, both streams together (grows while a read progresses)."""
        return sum(s.position for s in self.streams.values())

    @property
    def delivered(self) -> int:
        return sum(s.delivered for s in self.streams.values())

    async def follow(self, exited: asyncio.Event) -> None:
        """Copy the streams while the container runs; return once it has stopped.

        ``exited`` is set once the engine's wait on the container returned: a follow that
        ends before that broke, and is made again.
        """
        failures = 0
        while True:
            before = self.delivered
            try:
                await self._read(follow=True)
                whole = True
            except API_ERRORS as exc:
                if is_missing(exc):
                    raise
                if await self.runner._engine(exc):
                    # An outage is no broken stream: read again once the engine is back.
                    await self.runner.health.wait_up()
                    continue
                whole = False
            # A follow ends when the container stopped, or when the connection broke.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(exited.wait(), RETRY_DELAY)
            if exited.is_set() and whole:
                return
            failures = 0 if self.delivered > before else failures + 1
            if failures > WAIT_RETRIES:
                raise RuntimeError("the log stream keeps breaking")

    async def read_all(self) -> None:
        """Copy the whole streams as they are now, without following."""
        await self._read(follow=False)

    async def catch_up(self) -> None:
        """Copy what follows the last entries read (the engine has no byte offsets)."""
        seen = [_instant(s.last_ts) for s in self.streams.values() if s.last_ts]
        if not seen:
            await self.read_all()
            return
        seconds, nanos = min(seen)
        if len(seen) < len(self.streams):
            seconds -= CATCH_UP_MARGIN  # a stream without entries yet: read a little earlier
        for stream in self.streams.values():
            stream.resume()
        # ``since`` is inclusive: the entries of that instant already read come again.
        await self._read(follow=False, since=f"{seconds}.{nanos:09d}")

    async def _read(self, *, follow: bool, since: str | None = None) -> None:
        if since is None:
            for stream in self.streams.values():
                stream.restart()
        params = {"stdout": "1", "stderr": "1", "timestamps": "1"}
        params["follow"] = "1" if follow else "0"
        if since is not None:
            params["since"] = since
        path = f"containers/{self.container_id}/logs"
        async with self.runner._request(path, params=params) as response:
            await read_muxed(response, self._feed)

    def _feed(self, number: int, entry: bytes) -> None:
        stream = self.streams.get(number)
        if stream is not None:
            stream.feed(entry)


def _instant(timestamp: bytes) -> tuple[int, int]:
    """A log entry's timestamp as (seconds, nanoseconds) since the epoch, to compare."""
    seconds, _, nanos = unix_time(timestamp.decode()).partition(".")
    return int(seconds), int(nanos)


TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def unix_time(timestamp: str) -> str:
    """An RFC 3339 timestamp as "seconds.nanoseconds" since the epoch, keeping nanoseconds."""
    match = TIMESTAMP.match(timestamp)
    if match is None:
        raise ValueError(f"unexpected log timestamp {timestamp!r}")
    zone = "+00:00" if match[3] == "Z" else match[3]
    seconds = int(datetime.fromisoformat(match[1] + zone).timestamp())
    return f"{seconds}.{(match[2] or '').ljust(9, '0')}"
