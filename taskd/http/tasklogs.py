"""Streaming an attempt's captured output over HTTP, optionally following it to its end."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from taskd.errors import BadRequest
from taskd.http.keys import SERVICES
from taskd.http.serving import FOLLOWS, credential_of
from taskd.store import output as oq

STREAM_CHOICES = {
    "stdout": ("stdout",),
    "stderr": ("stderr",),
    "executor": ("executor",),
    "all": ("stdout", "stderr", "executor"),
}
FOLLOW_IDLE = 15.0  # seconds between checks that the attempt is still running
LIVENESS_EVERY = 1.0  # seconds between checks that a follower's client is still there


async def stream_output(request: web.Request, attempt_id: int) -> web.StreamResponse:
    choice = request.query.get("stream", "all")
    if choice not in STREAM_CHOICES:
        raise BadRequest(f"stream must be one of {', '.join(STREAM_CHOICES)}")
    follow = request.query.get("follow", "").lower() in ("1", "true", "yes")
    if follow:
        with request.app[FOLLOWS].hold(credential_of(request)):
            return await send_output(request, attempt_id, STREAM_CHOICES[choice], follow)
    return await send_output(request, attempt_id, STREAM_CHOICES[choice], follow)


async def send_output(
    request: web.Request, attempt_id: int, streams: tuple[str, ...], follow: bool
) -> web.StreamResponse:
    svc = request.app[SERVICES]
    resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await resp.prepare(request)
    expected: dict[str, int] = {}
    last_id = 0
    followers = svc.engine.followers
    while True:
        # Take the wake-up event before reading, so a flush between the two is not missed.
        woken = followers.event(attempt_id)
        try:
            still_open = await svc.store.read(oq.attempt_open, attempt_id)
            chunks = await svc.store.read(oq.chunks, attempt_id, streams, last_id)
            for chunk in chunks:
                start = expected.get(chunk.stream, 0)
                if chunk.offset > start:
                    await resp.write(oq.dropped_marker(chunk.offset - start))
                await resp.write(chunk.data)
                expected[chunk.stream] = chunk.offset + len(chunk.data)
                last_id = chunk.id
            if not follow or not still_open:
                break
            if not await woken_while_connected(request, woken):
                return resp  # the client left: free its follow slot now, not at the next flush
        finally:
            followers.release(attempt_id, woken)
    await resp.write_eof()
    return resp


async def woken_while_connected(request: web.Request, woken: asyncio.Event) -> bool:
    """Wait up to FOLLOW_IDLE for ``woken``; False as soon as the client has gone away.

    aiohttp does not tell a handler that its client left (short of cancelling every handler),
    so a follower looks once a second: cheap, and bounded by the cap on follows.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FOLLOW_IDLE
    while not woken.is_set() and loop.time() < deadline:
        if gone(request):
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(woken.wait(), min(LIVENESS_EVERY, deadline - loop.time()))
    return not gone(request)


def gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
