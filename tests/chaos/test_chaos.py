"""SIGKILL taskd at random moments under a mixed workload; the invariants must hold after.

The short variant runs with the normal suite; the long one (``-m slow``, CI) kills taskd more
than fifty times. The seed is printed so a failure can be replayed with
``python -m tests.chaos.harness --seed N --kills K``.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.chaos.harness import report, session

pytestmark = pytest.mark.docker


def seed() -> int:
    return int(os.environ.get("TASKD_CHAOS_SEED") or random.SystemRandom().randrange(1 << 32))


async def test_a_few_kills_break_nothing(tmp_path, docker_ready, capsys):
    figures = await session(tmp_path, seed(), kills=5)
    with capsys.disabled():
        print(report(figures))
    assert figures["kills"] == 5


async def test_a_full_disk_spell_among_kills_breaks_nothing(tmp_path, docker_ready, capsys):
    """The database's filesystem fills up after the kills: 503s meanwhile, then every schedule fires
    again, nothing acknowledged is lost and no run is left stuck."""
    figures = await session(tmp_path, seed(), kills=4, disk_full=True)
    with capsys.disabled():
        print(report(figures))
    assert figures["kills"] == 4


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_sixty_kills_and_a_full_disk_break_nothing(tmp_path, docker_ready, capsys):
    figures = await session(tmp_path, seed(), kills=60, disk_full=True)
    with capsys.disabled():
        print(report(figures))
    assert figures["kills"] == 60
    assert figures["refused_while_disk_full"] > 0
    assert figures["seconds"] < 540
