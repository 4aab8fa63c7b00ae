"""The app under fuzz, served from this process: an inert runner and a server thread."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from taskd.models import AttemptState, Outcome
from taskd.runners.base import AttemptContext, OutputSink, Runner, Started

# -- the inert runner ---------------------------------------------------------------------


class InertRunner(Runner):
    """Starts nothing: a job "prints" a JSON object and exits after a moment, or is killed.

    The exit code varies with the attempt (0 mostly, 1 sometimes), so retries, failures and
    kills of running jobs happen too. A generator's output ``{}`` adds no task.
    """

    def __init__(self, settings: Any, instance: str) -> None:
        super().__init__(settings, instance)
        self._stops: dict[str, asyncio.Event] = {}

    async def start(self, ctx: AttemptContext) -> Started:
        self._stops[ctx.attempt_uuid] = asyncio.Event()
        return Started(host="fuzz")

    async def wait(
        self,
        ctx: AttemptContext,
        started: Started,
        sink: OutputSink,
        skip: Mapping[str, int] | None = None,
    ) -> Outcome:
        sink.write("stdout", b"{}\n")
        stop = self._stops.setdefault(ctx.attempt_uuid, asyncio.Event())
        seed = int(ctx.attempt_uuid[-2:], 16)
        try:
            await asyncio.wait_for(stop.wait(), 0.05 + (seed % 8) / 10)
        except TimeoutError:
            return Outcome(AttemptState.EXITED, exit_code=1 if seed % 4 == 0 else 0)
        finally:
            self._stops.pop(ctx.attempt_uuid, None)
        return Outcome(AttemptState.KILLED, reason="killed")

    async def kill(self, ctx: AttemptContext, started: Started, grace: float) -> None:
        stop = self._stops.get(ctx.attempt_uuid)
        if stop is not None:
            stop.set()

    async def adopt(
        self, ctx: AttemptContext, started: Started, sink: OutputSink, skip: Mapping[str, int]
    ) -> Outcome:
        return Outcome(AttemptState.LOST, reason="inert runner")


def inert(name: str) -> type[Runner]:
    return type(f"Inert{name.title()}Runner", (InertRunner,), {"name": name})


# -- the live server ----------------------------------------------------------------------


@dataclasses.dataclass
class Live:
    url: str
    admin: dict[str, str]  # admin bearer + a registered worker's headers


class ServerThread:
    """The app on a real socket, served by its own event loop in a thread."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app, handle_signals=False)
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-server")

    def start(self) -> None:
        self.thread.start()
        self.call(self._start(), 30)

    async def _start(self) -> None:
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock).start()

    def call(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        try:
            self.call(self.runner.cleanup(), 60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
            self.loop.close()
