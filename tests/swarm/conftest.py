"""Fixtures for tests against a real Docker Swarm (a one-node swarm is enough).

Without a swarm manager these tests are skipped, unless ``TASKD_REQUIRE_SWARM=1`` is set (CI,
which makes its engine a swarm), in which case they fail instead.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess

import pytest

from tests.dockerutil import docker_available, ensure_test_image
from tests.server import Server


def swarm_manager() -> bool:
    """Whether the local engine is a swarm manager."""
    if not docker_available():
        return False
    result = subprocess.run(
        ["docker", "info", "--format", "{{.Swarm.ControlAvailable}}"],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    return result.stdout.strip() == "true"


def services(instance: str) -> list[str]:
    """The ids of the swarm services labelled with a taskd instance."""
    result = subprocess.run(
        ["docker", "service", "ls", "-q", "--filter", f"label=taskd.instance={instance}"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return result.stdout.split()


def remove_services(instance: str) -> None:
    found = services(instance)
    if found:
        subprocess.run(["docker", "service", "rm", *found], capture_output=True, timeout=60,
                       check=False)  # fmt: skip


def instance_of(srv: Server) -> str:
    with sqlite3.connect(srv.db) as db:
        return db.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()[0]


@pytest.fixture(scope="session")
def swarm_ready() -> str:
    """Skip (or fail, with TASKD_REQUIRE_SWARM=1) without a swarm; return the test image."""
    if not swarm_manager():
        message = "the Docker engine is not a swarm manager (docker swarm init)"
        if os.environ.get("TASKD_REQUIRE_SWARM") == "1":
            pytest.fail(f"TASKD_REQUIRE_SWARM=1 but {message}", pytrace=False)
        pytest.skip(message)
    return ensure_test_image()


@pytest.fixture
async def swarm_server(tmp_path, swarm_ready):
    """A taskd whose container jobs run on the swarm; its services are removed at the end."""
    srv = Server(tmp_path, "--container-runner", "swarm", "--kill-grace", "2")
    await srv.start()
    instance = instance_of(srv)
    yield srv
    srv.stop()
    remove_services(instance)
