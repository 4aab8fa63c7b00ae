"""Capturing what attempts print: bounded, streamed into the store while the job runs.

Per attempt and stream the first ``head`` bytes are kept, then a rolling tail of about ``tail``
bytes: older tail chunks are deleted as new ones arrive, so a job that prints gigabytes costs
a bounded amount of disk and its end (usually where the error is) is never lost. Output is
flushed every ``FLUSH_DELAY`` seconds or ``FLUSH_BYTES`` bytes, whichever comes first, and
followers (``GET .../logs?follow=true``) are woken on every flush.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque

from taskd.log import get_logger
from taskd.secrets import MASKER
from taskd.shell_conventions import Parsed, ShellConventions
from taskd.store import Store
from taskd.store import output as q

log = get_logger("taskd.output")

FLUSH_DELAY = 0.2
FLUSH_BYTES = 64 * 1024


class Followers:
    """Wakes readers of an attempt's output when new chunks were stored or it ended."""

    def __init__(self) -> None:
        self._events: dict[int, asyncio.Event] = {}
        self._users: dict[int, int] = {}  # readers holding the current event of an attempt

    def __len__(self) -> int:
        """Attempts with a reader waiting for more output."""
        return len(self._events)

    def event(self, attempt_id: int) -> asyncio.Event:
        """The event set at the next flush or end; give it back with ``release``."""
        ev = self._events.get(attempt_id)
        if ev is None:
            ev = self._events[attempt_id] = asyncio.Event()
        self._users[attempt_id] = self._users.get(attempt_id, 0) + 1
        return ev

    def release(self, attempt_id: int, ev: asyncio.Event) -> None:
        """A reader is done with ``ev``; the last one forgets it (an ended attempt is never
        woken again, so nothing else would)."""
        if self._events.get(attempt_id) is not ev:
            return  # already woken and forgotten
        users = self._users.get(attempt_id, 1) - 1
        if users > 0:
            self._users[attempt_id] = users
        else:
            self._users.pop(attempt_id, None)
            del self._events[attempt_id]

    def wake(self, attempt_id: int) -> None:
        ev = self._events.pop(attempt_id, None)
        self._users.pop(attempt_id, None)
        if ev is not None:
            ev.set()


class OutputWriter:
    """The sink runners write into for one attempt."""

    def __init__(
        self,
        store: Store,
        attempt_id: int,
        *,
        head: int,
        tail: int,
        followers: Followers | None = None,
        seen: dict[str, int] | None = None,
        tail_chunks: list[tuple[int, str, int]] | None = None,
    ) -> None:
        self.store = store
        self.attempt_id = attempt_id
        self.head = head
        self.tail = tail
        self.followers = followers
        self.offsets: dict[str, int] = dict(seen or {})
        self._pending: dict[str, list[bytes]] = {}
        self._pending_bytes = 0
        self._tails: dict[str, deque[tuple[int, int]]] = {}
        self._tail_size: dict[str, int] = {}
        for chunk_id, stream, size in tail_chunks or ():
            self._tails.setdefault(stream, deque()).append((chunk_id, size))
            self._tail_size[stream] = self._tail_size.get(stream, 0) + size
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._closed = False
        self._carry: dict[str, bytes] = {}  # held back: may be the start of a secret's value
        # Sundial shell tasks: stdout lines become log entries, metadata and a status report.
        self.lines: ShellConventions | None = None

    def write(self, stream: str, data: bytes) -> None:
        if not data or self._closed:
            return
        self._pending.setdefault(stream, []).append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= FLUSH_BYTES:
            self._flush_soon(0)
        elif self._timer is None:
            self._flush_soon(FLUSH_DELAY)

    def note(self, message: str) -> None:
        """A line of taskd's own about this attempt (Daggy's executorLog)."""
        self.write("executor", (message.rstrip("\n") + "\n").encode())

    def _flush_soon(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay, self._start_flush)

    def _start_flush(self) -> None:
        self._timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self.flush())
        else:
            self._flush_soon(FLUSH_DELAY)

    async def flush(self, final: bool = False) -> None:
        """Store what is buffered. Flushes take turns: one that computed its rows while another
        was still being written would roll the tail without the other's chunks, leaving a
        second gap in the kept output."""
        async with self._flush_lock:
            await self._flush(final)

    async def _flush(self, final: bool) -> None:
        if not self._pending and not (final and self._carry):
            return
        pending, self._pending, self._pending_bytes = self._pending, {}, 0
        if MASKER.values or self._carry:
            pending = self._masked(pending, final)
            if not pending:
                return
        rows: list[tuple[str, int, bool, bytes]] = []
        for stream, parts in pending.items():
            data = b"".join(parts)
            offset = self.offsets.get(stream, 0)
            self.offsets[stream] = offset + len(data)
            if offset < self.head:
                cut = min(len(data), self.head - offset)
                rows.append((stream, offset, True, data[:cut]))
                offset, data = offset + cut, data[cut:]
            if data:
                if len(data) > self.tail:  # more than the whole tail at once: keep its end
                    offset, data = offset + len(data) - self.tail, data[-self.tail :]
                rows.append((stream, offset, False, data))
        drop = self._roll(rows)
        parsed = None
        if self.lines is not None and "stdout" in pending:
            parsed = self.lines.feed(b"".join(pending["stdout"]), time.time_ns())
        try:
            ids = await self.store.write(self._append, rows, drop, parsed)
        except Exception:
            log.exception("storing output failed", attempt=self.attempt_id)
            return
        if parsed is not None:
            await self._report(parsed)
        for (stream, _, head, data), chunk_id in zip(rows, ids, strict=True):
            if not head:
                self._tails.setdefault(stream, deque()).append((chunk_id, len(data)))
                self._tail_size[stream] = self._tail_size.get(stream, 0) + len(data)
        if self.followers is not None:
            self.followers.wake(self.attempt_id)

    def _masked(self, pending: dict[str, list[bytes]], final: bool) -> dict[str, list[bytes]]:
        """Secret values masked; a value split across two writes is caught by holding back
        the last bytes (shorter than the longest value) until more arrive or the end."""
        keep = 0 if final else max(0, MASKER.longest - 1)
        out: dict[str, list[bytes]] = {}
        for stream in set(pending) | set(self._carry):
            data = self._carry.pop(stream, b"") + b"".join(pending.get(stream, ()))
            data = MASKER.mask(data)
            if keep and len(data) > 0:
                self._carry[stream], data = data[-keep:], data[:-keep]
            if data:
                out[stream] = [data]
        return out

    def _append(
        self,
        db: sqlite3.Connection,
        rows: list[tuple[str, int, bool, bytes]],
        drop: list[int],
        parsed: Parsed | None,
    ) -> list[int]:
        ids = q.append(db, self.attempt_id, rows, drop)
        if parsed:
            q.add_entries_of(db, self.attempt_id, parsed.logs, parsed.metadata)
        return ids

    async def _report(self, parsed: Parsed) -> None:
        assert self.lines is not None
        for status in parsed.statuses:
            try:
                await self.lines.report(status)
            except Exception:
                log.exception("storing a reported status failed", attempt=self.attempt_id)

    async def end_of_output(self) -> None:
        """Store what is buffered and, for shell tasks, read the last unfinished line too.

        Called before the attempt's result is decided, so a status printed last counts.
        """
        await self.flush(final=True)
        if self.lines is None:
            return
        parsed = self.lines.feed(b"", time.time_ns(), final=True)
        if parsed:
            await self.store.write(self._append, [], [], parsed)
            await self._report(parsed)

    def _roll(self, rows: list[tuple[str, int, bool, bytes]]) -> list[int]:
        """Tail chunks to delete so each stream's tail stays about ``tail`` bytes."""
        drop: list[int] = []
        incoming: dict[str, int] = {}
        for stream, _, head, data in rows:
            if not head:
                incoming[stream] = incoming.get(stream, 0) + len(data)
        for stream, extra in incoming.items():
            chunks = self._tails.get(stream)
            size = self._tail_size.get(stream, 0)
            while chunks and size + extra - chunks[0][1] >= self.tail:
                chunk_id, n = chunks.popleft()
                size -= n
                drop.append(chunk_id)
            self._tail_size[stream] = size
        return drop

    async def close(self) -> None:
        """Store everything still buffered; later writes are ignored."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            await self._flushing
        await self.flush(final=True)
        self._closed = True
