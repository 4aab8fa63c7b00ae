"""The composition root: one store, one engine, one authenticator, shared by every API family."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import structlog

from taskd.auth import Authenticator, load_admin_token
from taskd.config import Settings
from taskd.engine.core import Engine
from taskd.engine.scheduler import Scheduler
from taskd.store import Store, tokens

log = structlog.get_logger("taskd")


@dataclass
class Services:
    settings: Settings
    store: Store
    auth: Authenticator
    instance: str  # a random id of this database; labels every container taskd starts
    engine: Engine = None  # type: ignore[assignment]
    scheduler: Scheduler = None  # type: ignore[assignment]
    extras: dict[str, Any] = field(default_factory=dict)  # family-owned services (work queue)

    @classmethod
    async def open(cls, settings: Settings) -> Services:
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
                        instance=instance)  # fmt: skip
        services.engine = Engine(settings, store, instance)
        services.scheduler = Scheduler(services.engine)
        return services

    async def close(self) -> None:
        await self.store.close()
