"""Fixtures of the fake-clock engine and scheduler tests (see ``fakes.py``)."""

from __future__ import annotations

import dataclasses

import pytest

from tests.unit.fakes import MONDAY, World, memory_dir


@pytest.fixture
def settings(settings, tmp_path):
    """The shared test settings, with the database in RAM when possible."""
    with memory_dir(tmp_path) as d:
        yield dataclasses.replace(settings, db=d / "taskd.db")


@pytest.fixture
async def world(settings):
    """An engine on a fake clock and a fake runner, over a real store."""
    w = await World(settings, MONDAY).open()
    yield w
    await w.close()


@pytest.fixture
async def narrow(settings):
    """A host that runs two jobs at a time."""
    w = await World(settings, MONDAY).open(max_parallel=2)
    yield w
    await w.close()
