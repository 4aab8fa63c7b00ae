"""A kill whose grace is longer than any client time limit still completes (``--kill-grace``)."""

from __future__ import annotations

import asyncio
import time

import pytest

from taskd.models import AttemptState
from tests.docker.test_docker_runner import make_ctx
from tests.dockerutil import CollectingSink

pytestmark = [pytest.mark.docker, pytest.mark.slow]

GRACE = 125.0  # above the 120 s limit of ordinary engine requests


@pytest.mark.timeout(GRACE + 120)
async def test_a_kill_with_a_long_grace_waits_it_out(runner, test_image):
    r = runner(kill_grace=GRACE)
    # Ignores the stop signal: only the hard kill at the end of the grace ends it.
    ctx = make_ctx(test_image, "trap '' TERM; sleep 600 & wait; sleep 600")
    started = await r.start(ctx)
    waiting = asyncio.create_task(r.wait(ctx, started, CollectingSink()))
    t0 = time.monotonic()
    await r.kill(ctx, started, GRACE)  # raised a client timeout before
    assert time.monotonic() - t0 >= GRACE - 5
    outcome = await asyncio.wait_for(waiting, 30)
    assert outcome.state is AttemptState.EXITED
    assert outcome.exit_code == 137
