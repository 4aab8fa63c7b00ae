"""A second listener for containers: the task callbacks only, on a docker network's gateway.

Containers on a bridge network reach the host at the network's gateway address, not at
127.0.0.1. When taskd listens on loopback only, the docker runner asks for this listener on
the gateway address (same port); it serves nothing but the four task-token routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from taskd.http import envelopes, guard, on_start
from taskd.http.keys import SERVICES
from taskd.processes import routes as processes

if TYPE_CHECKING:
    from taskd.app import Services

ROUTES = (
    ("/api/tasks/{task_id}/log_entries", processes.log_entries),
    ("/api/tasks/{task_id}/metadata", processes.metadata),
    ("/api/tasks/{task_id}/succeed", processes.succeed),
    ("/api/tasks/{task_id}/fail", processes.fail),
)


class CallbackListener:
    """Listens on extra addresses with an app that has only the task callback routes."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._runner: web.AppRunner | None = None
        self._bound: set[str] = set()  # several runners may ask for the same gateway

    async def bind(self, address: str) -> None:
        """Listen on ``address`` (the main port); OSError when that is not possible."""
        if address in self._bound:
            return
        if self._runner is None:
            settings = self.services.settings
            app = web.Application(
                client_max_size=settings.max_body_bytes,
                middlewares=[envelopes.errors_middleware, guard.auth_middleware],
            )
            app[SERVICES] = self.services
            for path, handler in ROUTES:
                app.router.add_post(path, handler)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
        site = web.TCPSite(self._runner, address, self.services.settings.port)
        await site.start()
        self._bound.add(address)

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


async def _start(services: Services) -> None:
    runners = [r for r in services.engine.runners.values() if hasattr(r, "callbacks")]
    if runners:
        listener = CallbackListener(services)
        services.extras["callback_listener"] = listener
        for runner in runners:  # docker, and swarm jobs on this host's bridge
            runner.callbacks.bind = listener.bind


async def _stop(services: Services) -> None:
    listener = services.extras.pop("callback_listener", None)
    if listener is not None:
        await listener.close()


def setup(app: web.Application) -> None:
    on_start(app, _start, _stop)
