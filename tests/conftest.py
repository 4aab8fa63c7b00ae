"""Fixtures shared by every test: a real SQLite file per test and a real HTTP app."""

from __future__ import annotations

import dataclasses

import pytest

from taskd.app import create_app
from taskd.config import Settings

ADMIN = "test-admin-token"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        db=tmp_path / "taskd.db",
        admin_token=ADMIN,
        docker_network="none",
        kill_grace=2.0,
        shutdown_grace=1.0,
        max_parallel=8,
    )


@pytest.fixture
def make_client(aiohttp_client, settings):
    """Start the whole server (store, engine, every family) on a fresh database."""

    async def make(**overrides):
        s = dataclasses.replace(settings, **overrides) if overrides else settings
        return await aiohttp_client(create_app(s))

    return make


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
async def services(settings):
    """The core without HTTP: store, engine and runners on a fresh database."""
    from taskd.app import Services

    svc = await Services.open(settings)
    await svc.engine.start()
    await svc.scheduler.start()
    yield svc
    await svc.scheduler.stop()
    await svc.engine.stop()
    await svc.close()
