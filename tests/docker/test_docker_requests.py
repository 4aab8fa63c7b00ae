"""What the docker runner asks of the engine per task, and that reading both output streams in
one request still delivers every byte of each, to the right stream."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiodocker
import pytest

from taskd.models import AttemptState
from tests.docker.test_docker_runner import make_ctx, run

pytestmark = pytest.mark.docker


@pytest.fixture
def requests(monkeypatch) -> Counter[str]:
    """Every request an aiodocker client sends, by method and path (container ids as {id})."""
    seen: Counter[str] = Counter()
    real = aiodocker.Docker._do_query

    async def counted(client, *args, **kwargs):
        parts = str(kwargs.get("path", args[0] if args else "")).split("/")
        if len(parts) > 1 and parts[0] == "containers" and parts[1] not in ("create", "json"):
            parts[1] = "{id}"
        seen[f"{kwargs.get('method', 'GET')} {'/'.join(parts)}"] += 1
        return await real(client, *args, **kwargs)

    monkeypatch.setattr(aiodocker.Docker, "_do_query", counted)
    return seen


async def test_a_successful_task_costs_six_engine_requests(runner, test_image, requests):
    r = runner()
    ctx = make_ctx(test_image, "echo out; echo err >&2")
    await r._client()._check_version()  # the client's one-time API version check
    requests.clear()
    started, outcome, sink = await run(r, ctx)
    await r.cleanup(ctx, started)
    assert outcome.exit_code == 0
    assert (sink.stdout, sink.stderr) == (b"out\n", b"err\n")
    # create, start, wait, one follow of both streams, one read after the end, remove:
    # no image look-up while the image is there, no inspect when the wait says 0.
    assert requests == {
        "POST containers/create": 1,
        "POST containers/{id}/start": 1,
        "POST containers/{id}/wait": 1,
        "GET containers/{id}/logs": 2,
        "DELETE containers/{id}": 1,
    }


async def test_a_failed_task_is_inspected_for_why(runner, test_image, requests):
    r = runner()
    ctx = make_ctx(test_image, "exit 4")
    _, outcome, _ = await run(r, ctx)
    assert outcome.state is AttemptState.EXITED
    assert outcome.exit_code == 4
    assert requests["GET containers/{id}/json"] == 1


# Last pieces without a newline on one stream or both, and a stream with nothing at all: the
# engine's follow often ends before delivering such a last piece (it is read again after).
ENDINGS = [
    ("echo a; printf end", b"a\nend", b""),
    ("echo err >&2; printf x >&2", b"", b"err\nx"),
    ("echo a; echo err >&2; echo b; printf x >&2; printf end", b"a\nb\nend", b"err\nx"),
    ("printf 1; printf 2 >&2; printf 3; printf 4 >&2", b"13", b"24"),
]


async def test_short_containers_deliver_each_streams_last_piece(runner, test_image):
    r = runner()
    semaphore = asyncio.Semaphore(4)

    async def one(script: str) -> tuple[bytes, bytes]:
        async with semaphore:
            ctx = make_ctx(test_image, script)
            started, outcome, sink = await run(r, ctx)
            await r.cleanup(ctx, started)
            assert outcome.exit_code == 0
            return sink.stdout, sink.stderr

    cases = ENDINGS * 5
    got = await asyncio.gather(*(one(script) for script, _, _ in cases))
    assert got == [(out, err) for _, out, err in cases]
