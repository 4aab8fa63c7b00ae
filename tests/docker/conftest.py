"""Fixtures for tests against a real Docker engine.

Without an engine these tests are skipped, unless ``TASKD_REQUIRE_DOCKER=1`` is set (CI), in
which case they fail: a machine that should run them must not skip them silently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from taskd.config import Settings
from taskd.runners.docker import DockerRunner
from tests.dockerutil import docker_available, ensure_test_image, remove_labelled


@pytest.fixture(scope="session")
def docker_ready() -> str:
    """Skip (or fail, with TASKD_REQUIRE_DOCKER=1) without an engine; return the test image."""
    if not docker_available():
        message = "no Docker engine reachable (is the daemon running, is DOCKER_HOST right?)"
        if os.environ.get("TASKD_REQUIRE_DOCKER") == "1":
            pytest.fail(f"TASKD_REQUIRE_DOCKER=1 but {message}", pytrace=False)
        pytest.skip(message)
    try:
        return ensure_test_image()
    except Exception as exc:
        pytest.fail(f"cannot build the Docker test image: {exc}", pytrace=False)


@pytest.fixture
def test_image(docker_ready: str) -> str:
    """The name of the local busybox image the tests run."""
    return docker_ready


@pytest.fixture
async def runner(docker_ready: str) -> AsyncIterator[Callable[..., DockerRunner]]:
    """A factory of DockerRunners, each with a fresh instance id.

    ``runner(instance=None, **settings)``: at teardown every container labelled with one of
    the instances handed out is force-removed, so no test leaves containers behind.
    """
    made: list[DockerRunner] = []

    def make(instance: str | None = None, **overrides: object) -> DockerRunner:
        settings = dataclasses.replace(Settings(docker_network="none", kill_grace=2), **overrides)
        made.append(DockerRunner(settings, instance or f"test-{uuid.uuid4().hex[:12]}"))
        return made[-1]

    yield make

    for r in made:
        await r.close()
    for instance in {r.instance for r in made}:
        await asyncio.to_thread(remove_labelled, f"taskd.instance={instance}")
