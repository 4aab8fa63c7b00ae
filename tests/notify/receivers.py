"""Real receivers for notification tests: an SMTP server and HTTP endpoints that record."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller

from tests.server import free_port


class Mailbox:
    """aiosmtpd handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd calls it by this name
        self.messages.append(envelope)
        return "250 OK"


def smtp_server() -> tuple[Controller, Mailbox]:
    box = Mailbox()
    ctl = Controller(box, hostname="127.0.0.1", port=free_port())
    ctl.start()
    return ctl, box


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any


@dataclass
class Receiver:
    """An HTTP server taking POSTs on any path; ``up`` False answers 503 as a down service."""

    port: int = field(default_factory=free_port)
    hits: list[Hit] = field(default_factory=list)
    up: bool = True
    hold: asyncio.Event | None = None  # set: record each POST, then answer only once it is set
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            if not self.up:
                return web.Response(status=503, text="down for maintenance")
            self.hits.append(Hit(request.path, dict(request.headers), body, await request.json()))
            if self.hold is not None:
                await self.hold.wait()
            return web.json_response({"status": "success"}, status=202)

        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def on(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]


async def until(predicate, within: float = 30.0) -> Any:
    """Wait for a condition the test cannot be told about (an outside receiver got mail)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)
