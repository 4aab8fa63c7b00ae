"""Background work that outlives a crash: named parts, restarted with backoff, watched.

A part is a coroutine factory. When its coroutine raises, the traceback is logged, the crash is
counted (``taskd_background_restarts_total{part}``), the part is reported down (``GET /ready``
answers 503 naming it) and it is started again after an exponential backoff. It counts as up
again once a new incarnation has run for ``STABLE`` seconds, or has finished its work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from taskd.log import get_logger

log = get_logger("taskd.supervisor")

BACKOFF_FIRST = 0.5  # seconds before the first restart; doubled after each crash
BACKOFF_MAX = 30.0
STABLE = 1.0  # an incarnation that lives this long counts as recovered


class Supervisor:
    """Owns the long-lived background tasks of one server."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.down: dict[str, str] = {}  # part name -> why it is down
        self.restarts = Counter(
            "taskd_background_restarts", "Background parts restarted after a crash, by part.",
            ["part"], registry=registry,
        )  # fmt: skip
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(
        self,
        name: str,
        factory: Callable[[], Awaitable[Any]],
        *,
        part: str | None = None,
        once: bool = False,
    ) -> asyncio.Task[None]:
        """Run ``factory()`` until cancelled (or, with ``once``, until it returns normally).

        ``name`` is what ``/ready`` reports; ``part`` labels the metric (defaults to ``name``;
        give one when names are many, such as one per definition).
        """
        coro = self._keep(name, part or name, factory, once)
        task = asyncio.get_running_loop().create_task(coro, name=f"taskd-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _keep(
        self, name: str, part: str, factory: Callable[[], Awaitable[Any]], once: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        backoff = [BACKOFF_FIRST]

        def recovered() -> None:
            self.down.pop(name, None)
            backoff[0] = BACKOFF_FIRST

        while True:
            timer = loop.call_later(STABLE, recovered) if name in self.down else None
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if timer is not None:
                    timer.cancel()
                self.restarts.labels(part).inc()
                self.down[name] = f"{type(exc).__name__}: {exc}"
                log.error("background work crashed; restarting", part=name,
                          retry_in=backoff[0], exc_info=exc)  # fmt: skip
                await asyncio.sleep(backoff[0])
                backoff[0] = min(backoff[0] * 2, BACKOFF_MAX)
            else:
                self.down.pop(name, None)  # its work is done (a loop that returns has ended)
                return
            finally:
                if timer is not None:
                    timer.cancel()

    async def stop(self, grace: float = 5.0) -> None:
        """Cancel every part and wait (briefly) for them to end."""
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(tasks, timeout=grace)
