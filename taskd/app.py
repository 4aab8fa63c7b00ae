"""The composition root: the services every API family shares, and the app that serves them.

``Services`` holds one store, one engine and one authenticator; ``create_app`` builds the
aiohttp app from the HTTP plumbing (``taskd.http``) and the parts listed in ``families()``.
This is the only module that knows every family.
"""

from __future__ import annotations

import gc
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from taskd.auth import Authenticator, load_admin_token
from taskd.config import Settings
from taskd.engine.engine import Engine
from taskd.http import STARTERS, STOPPERS, envelopes, guard, idempotency, serving
from taskd.http.keys import SERVICES
from taskd.log import get_logger
from taskd.processes.scheduler import Scheduler
from taskd.store import Store, tokens
from taskd.store.db import DatabaseLock

log = get_logger("taskd")


@dataclass
class Services:
    settings: Settings
    store: Store
    auth: Authenticator
    instance: str  # a random id of this database; labels every container taskd starts
    engine: Engine = None  # type: ignore[assignment]
    scheduler: Scheduler = None  # type: ignore[assignment]
    extras: dict[str, Any] = field(default_factory=dict)  # what a family starts, by name
    lock: DatabaseLock | None = None  # held here when ``open`` took it (not the caller)

    @classmethod
    async def open(cls, settings: Settings, lock: DatabaseLock | None = None) -> Services:
        """Open the store and build the engine; takes the database lock unless given one.

        One server per database: a second would take the first one's running jobs for lost.
        """
        own = None
        if lock is None:
            own = DatabaseLock(settings.db)
            own.acquire()
        try:
            return await cls._open(settings, own)
        except BaseException:
            if own is not None:
                own.release()
            raise

    @classmethod
    async def _open(cls, settings: Settings, lock: DatabaseLock | None) -> Services:
        from taskd.engine.engine import RUNNER_IMPORT_ERRORS

        for runner, why in sorted(RUNNER_IMPORT_ERRORS.items()):
            log.error("runner unavailable: it failed to import", runner=runner, error=why)
        store = await Store.open(settings.db)
        token, generated = load_admin_token(settings.admin_token, settings.token_file)
        if generated:
            # Printed once, on the first start; it stays in the 0600 file beside the database.
            print(
                f"taskd: generated admin token (saved in {settings.token_file.name}): {token}",
                flush=True,
            )
        instance = await store.write(tokens.meta_setdefault, "instance", secrets.token_hex(6))
        services = cls(settings=settings, store=store, auth=Authenticator(store, token),
                        instance=instance, lock=lock)  # fmt: skip
        services.engine = Engine(settings, store, instance)
        services.scheduler = Scheduler(services.engine)
        return services

    def down(self) -> dict[str, str]:
        """The parts not working now, and why (``GET /ready`` answers 503 naming them)."""
        parts = dict(self.engine.supervisor.down) if self.engine is not None else {}
        if self.store.lost:
            parts["store"] = self.store.lost
        return parts

    async def close(self) -> None:
        try:
            await self.store.close()
        finally:
            if self.lock is not None:
                self.lock.release()


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
    from taskd.web import setup as dashboard  # the web dashboard at /

    dashboard(app)
    return app


def families() -> list:
    """The parts whose ``setup(app)`` adds routes: the health check, one per API family, OpenAPI."""
    from taskd import containertasks, dagruns, processes, workqueue
    from taskd.http import admin, health, openapi
    from taskd.notify import operations  # notifications, alerts and secrets

    return [health, processes, dagruns, containertasks, workqueue, admin, operations, openapi]
