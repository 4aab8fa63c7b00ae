"""Live updates for open pages, fed by the engine's committed batches (no loop of its own).

A page that follows a run subscribes to it and gets the task states as they are committed;
the overview subscribes to everything and is told that something changed. Queues are bounded:
a reader too slow to keep up gets told to reload instead of holding memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

QUEUE_SIZE = 1000
RELOAD = ("reload", None, None)
CLOSING = ("closing", None, None)


class Hub:
    """Fans committed state changes out to the pages that follow them."""

    def __init__(self) -> None:
        self._runs: dict[int, set[asyncio.Queue[tuple[str, Any, Any]]]] = {}
        self._any: set[asyncio.Event] = set()
        self.closed = False  # the server is shutting down: streams end now

    def close(self) -> None:
        """End every open stream (the server shuts down and waits for its handlers)."""
        self.closed = True
        for ev in self._any:
            ev.set()
        for queues in self._runs.values():
            for queue in queues:
                while queue.full():
                    queue.get_nowait()
                queue.put_nowait(CLOSING)

    def __len__(self) -> int:
        """Open subscriptions (runs followed plus overview pages)."""
        return sum(len(s) for s in self._runs.values()) + len(self._any)

    def committed(self, ch: Any) -> None:
        """Called by the engine after each committed batch."""
        if not ch.history:
            return
        for ev in self._any:
            ev.set()
        if not self._runs:
            return
        for run_id, task_id, state in ch.history:
            queues = self._runs.get(run_id)
            if not queues:
                continue
            item = ("task", task_id, state) if task_id is not None else ("run", run_id, state)
            for queue in queues:
                try:
                    queue.put_nowait(item)
                except asyncio.QueueFull:
                    # Too far behind: drop what is queued, ask the page to reload its state.
                    while not queue.empty():
                        queue.get_nowait()
                    queue.put_nowait(RELOAD)

    @contextmanager
    def follow_run(self, run_id: int) -> Iterator[asyncio.Queue[tuple[str, Any, Any]]]:
        """A queue of ``(kind, id, state)`` changes of one run while the block runs."""
        queue: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._runs.setdefault(run_id, set()).add(queue)
        try:
            yield queue
        finally:
            queues = self._runs.get(run_id)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._runs[run_id]

    @contextmanager
    def follow_all(self) -> Iterator[asyncio.Event]:
        """An event set whenever any run or task changed state (cleared by the reader)."""
        ev = asyncio.Event()
        self._any.add(ev)
        try:
            yield ev
        finally:
            self._any.discard(ev)
