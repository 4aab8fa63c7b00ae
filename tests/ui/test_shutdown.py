"""Open dashboard pages do not hold up a shutdown: their streams end cleanly on SIGTERM."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.server import TOKEN, Server


async def test_sigterm_ends_open_live_streams_cleanly(tmp_path):
    server = Server(tmp_path)
    await server.start()
    try:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(server.url, cookie_jar=jar) as session:
            async with session.post(
                "/ui/login", data={"token": TOKEN}, allow_redirects=False
            ) as resp:
                assert resp.status == 303
            async with session.get("/ui/events") as stream:
                assert stream.status == 200
                assert stream.content_type == "text/event-stream"
                took = await asyncio.to_thread(server.terminate)
                # A clean end of the stream, not a connection cut mid-chunk.
                rest = await asyncio.wait_for(stream.read(), 10)
                assert rest == b""
        assert took < 10
    finally:
        server.stop()
