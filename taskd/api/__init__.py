"""The HTTP face: ``create_app()`` builds one aiohttp app with every API family's routes."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator

from aiohttp import web

from taskd.api import envelopes, guard, idempotency, serving
from taskd.api.keys import SERVICES
from taskd.config import Settings
from taskd.services import Services
from taskd.store.db import DatabaseLock


def create_app(settings: Settings, lock: DatabaseLock | None = None) -> web.Application:
    """The whole taskd server: store, engine and every API family, started with the app.

    ``lock`` is the database lock the caller already holds (``taskd serve`` takes it before
    anything else); without one the app takes it itself.
    """
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            serving.busy_middleware, envelopes.errors_middleware, guard.auth_middleware,
            serving.body_middleware,
        ],
    )  # fmt: skip
    serving.install(app, settings)
    guard.install(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        services = await Services.open(settings, lock)
        app[SERVICES] = services
        try:
            # Families first: they install hooks (generators) that recovered runs may need.
            for start in app.get(STARTERS, []):
                await start(services)
            await services.engine.start()
            await services.scheduler.start()
            # What exists now lives as long as the server: keep it out of every GC pass.
            gc.freeze()
            yield
        finally:
            for stop in reversed(app.get(STOPPERS, [])):
                await stop(services)
            await services.scheduler.stop()
            await services.engine.stop()
            await services.close()

    app.cleanup_ctx.append(lifecycle)
    idempotency.setup(app)
    for family in families():
        family.setup(app)
    from taskd.api import callbacks  # containers' callback listener, started on demand

    callbacks.setup(app)
    return app


STARTERS: web.AppKey[list] = web.AppKey("starters")
STOPPERS: web.AppKey[list] = web.AppKey("stoppers")


def on_start(app: web.Application, start, stop=None) -> None:
    """Let a family start (and stop) its own background service with the app."""
    app.setdefault(STARTERS, []).append(start)
    if stop is not None:
        app.setdefault(STOPPERS, []).append(stop)


def families() -> list:
    """The modules whose ``setup(app)`` adds routes: one per API family."""
    from taskd.api import common, dagruns, openapi, processes, tasks, workqueue
    from taskd.notify import operations  # notifications, alerts and secrets

    return [common, processes, dagruns, tasks, workqueue, operations, openapi]
