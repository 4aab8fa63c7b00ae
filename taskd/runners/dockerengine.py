"""Whether the Docker engine answers, and waiting for it to come back when it does not.

An engine that is stopped, restarting or whose socket is gone is not the job's fault: the
docker runner reports it here instead of failing attempts. While the engine is up nothing
polls it; once a request finds it unreachable, one probe loop pings it with a growing delay
until it answers, then wakes everyone waiting and calls the ``on_up`` listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable

import aiodocker
import aiohttp

from taskd.log import get_logger

log = get_logger("taskd.docker")

# The client reports a connection that could not be made as this pseudo status.
_NO_CONNECTION = 900
PROBE_FIRST = 0.5  # seconds before the first probe, doubling up to PROBE_MAX
PROBE_MAX = 10.0
_PROBE_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=5)
# An engine stops its containers during the seconds before its API goes away.
SHUTDOWN_LEAD = 30.0

# Errors that mean "the engine did not answer this request", as opposed to a bug of ours.
API_ERRORS = (aiodocker.DockerError, aiohttp.ClientError, OSError, asyncio.TimeoutError)


def is_missing(exc: BaseException) -> bool:
    """Whether the engine answered that the object does not exist."""
    return isinstance(exc, aiodocker.DockerError) and exc.status == 404


def unreachable(exc: BaseException) -> bool:
    """Whether an error may mean the engine went away (no answer, as opposed to a refusal).

    Callers confirm with ``EngineHealth.lost``, which pings before declaring an outage.
    """
    if isinstance(exc, aiodocker.DockerError):
        return exc.status == _NO_CONNECTION
    return isinstance(exc, (aiohttp.ClientError, OSError, asyncio.TimeoutError))


def wait_result(body: bytes) -> tuple[int | None, str]:
    """The exit status and error of the engine's answer to a wait; None when unreadable
    (the container's state is then looked at instead)."""
    try:
        doc = json.loads(body)
        return int(doc["StatusCode"]), str((doc.get("Error") or {}).get("Message") or "")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None, ""


class EngineHealth:
    """Tracks whether the engine answers; one probe loop runs only while it does not."""

    def __init__(self, ping: Callable[[], object]) -> None:
        self._ping = ping  # an async callable that raises when the engine does not answer
        self._up = asyncio.Event()
        self._up.set()
        self._probe: asyncio.Task[None] | None = None
        self.on_up: list[Callable[[], None]] = []
        self.outages = 0
        # (found down, back) wall-clock seconds of the last outages; back is None while down.
        self._windows: deque[list[float | None]] = deque(maxlen=16)

    @property
    def up(self) -> bool:
        return self._up.is_set()

    async def wait_up(self) -> None:
        """Return once the engine answers (at once while it is up)."""
        await self._up.wait()

    async def lost(self, exc: BaseException) -> None:
        """A request failed as if the engine were gone: confirm with one ping, then hold.

        A single broken connection is not an outage; a failed ping is.
        """
        if not self.up:
            return
        try:
            await self._ping_once()
            return
        except Exception:
            pass
        if not self.up:
            return
        self._up.clear()
        self.outages += 1
        self._windows.append([time.time(), None])
        log.warning("the Docker engine is unreachable; holding container work until it is back",
                    error=str(exc) or type(exc).__name__)  # fmt: skip
        self._probe = asyncio.get_running_loop().create_task(self._probe_until_up())

    async def _ping_once(self) -> None:
        async with asyncio.timeout(_PROBE_TIMEOUT.total):
            await self._ping()  # type: ignore[misc]

    async def _probe_until_up(self) -> None:
        delay = PROBE_FIRST
        while True:
            await asyncio.sleep(delay)
            try:
                await self._ping_once()
                break
            except Exception:
                delay = min(PROBE_MAX, delay * 2)
        log.warning("the Docker engine is back; resuming container work")
        self._probe = None
        self._windows[-1][1] = time.time()
        self._up.set()
        for listener in list(self.on_up):
            try:
                listener()
            except Exception:
                log.exception("engine-up listener failed")

    def around_outage(self, at: float | None) -> bool:
        """Whether wall-clock time ``at`` falls in an outage seen, or just before one began.

        A container the engine stopped on its way down ended shortly before taskd found the
        engine gone.
        """
        if at is None:
            return False
        now = time.time()
        return any(
            down - SHUTDOWN_LEAD <= at <= (back if back is not None else now)
            for down, back in self._windows
        )

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
