"""Connections (edge item 1): slowloris, descriptor exhaustion and follow floods, for real.

Each test starts a real ``taskd serve``, attacks it over loopback for a bounded time, and shows
the attack fails while a real client's requests keep answering (see ``edge.probing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp

from tests.processes.sundial import definition, shell
from tests.security.edge import ADMIN, open_fds, probing, started

HEAD_START = b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n"
HALF_HEAD = b"POST /v1/dagrun HTTP/1.1\r\nHost: x\r\nContent-Le"
HALF_BODY = (
    b"POST /task/submit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n{"
)


async def test_slowloris_connections_are_cut_at_the_header_timeout(tmp_path):
    srv = await started(tmp_path, "--header-timeout", "2")
    try:
        conns = []
        for _ in range(500):
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            writer.write(HEAD_START)
            conns.append((reader, writer))
        t0 = time.monotonic()
        ended: dict[int, tuple[float, bytes]] = {}

        async def trickle(i: int, reader: asyncio.StreamReader, writer) -> None:
            # One byte of a header line that never ends, every quarter second, for 15 s at most.
            while time.monotonic() - t0 < 15:
                try:
                    writer.write(b"x")
                    await writer.drain()
                    data = await asyncio.wait_for(reader.read(100), 0.25)
                except TimeoutError:
                    continue
                except OSError:
                    data = b""
                ended[i] = (time.monotonic() - t0, data)
                return

        async with probing(srv) as probe:
            await asyncio.gather(*(trickle(i, r, w) for i, (r, w) in enumerate(conns)))
        for _, writer in conns:
            writer.close()
        probe.check()
        assert len(ended) == 500, f"{500 - len(ended)} slow connections still open after 15 s"
        assert max(t for t, _ in ended.values()) < 8
        assert all(data == b"" for _, data in ended.values()), "a slow request got an answer"
    finally:
        srv.stop()


async def test_a_flood_of_half_sent_requests_cannot_exhaust_descriptors(tmp_path):
    cap = 100
    srv = await started(tmp_path, "--max-connections", str(cap), "--header-timeout", "60")
    try:
        assert srv.proc is not None
        conns = []
        burst = 50
        async with probing(srv) as probe:
            await asyncio.sleep(0.5)  # the probe's reads open the store's reader connections
            baseline = peak = open_fds(srv.proc.pid)
            for _ in range(40):  # 2,000 half-sent requests, fifty every 50 ms
                for i in range(burst):
                    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
                    # Half stop in the head; half send a whole head to a route anyone may call
                    # and stop in the body, which taskd must wait for.
                    writer.write(HALF_HEAD if i % 2 else HALF_BODY)
                    conns.append((reader, writer))
                peak = max(peak, open_fds(srv.proc.pid))
                await asyncio.sleep(0.05)
            for _ in range(20):  # and hold them
                peak = max(peak, open_fds(srv.proc.pid))
                await asyncio.sleep(0.05)
        probe.check()
        # Beyond the cap, only a burst accepted at once before the cap drops its oldest.
        assert peak <= baseline + cap + burst, (baseline, peak)
        dropped = 0
        for reader, writer in conns:
            try:
                data = await asyncio.wait_for(reader.read(100), 0.01)
                dropped += data == b"" or data.startswith(b"HTTP/1.1 503")
            except (TimeoutError, OSError):
                pass
            writer.close()
        # Every attacker beyond the cap was dropped (a few slots go to the probe's requests).
        assert dropped >= len(conns) - cap - 10, dropped
        status, _ = await srv.request("GET", "/ready")
        assert status == 200
    finally:
        srv.stop()


async def running_task(srv) -> str:
    """The attempt id of a task that prints a line and then runs for a minute."""
    doc = definition("long", shell("t", "echo started; exec sleep 60"))
    assert (await srv.request("PUT", "/api/process_definitions/long", json=doc))[0] == 200
    assert (await srv.request("POST", "/api/process_definitions/long/trigger"))[0] == 204
    for _ in range(200):
        _, found = await srv.request("GET", "/api/processes?process_definition_name=long")
        if found and found[0]["task"]:
            return found[0]["task"][0]["task_id"]
        await asyncio.sleep(0.05)
    raise AssertionError("the task did not start")


async def test_when_every_connection_is_busy_a_new_one_gets_a_clear_503(tmp_path):
    srv = await started(tmp_path, "--max-connections", "8")
    try:
        task_id = await running_task(srv)
        url = f"{srv.url}/api/tasks/{task_id}/logs?follow=true"
        async with aiohttp.ClientSession() as http:
            held = []
            for _ in range(8):  # eight requests in progress: nothing may be dropped
                resp = await http.get(url, headers=ADMIN)
                assert resp.status == 200
                await resp.content.readexactly(len(b"started\n"))
                held.append(resp)
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            writer.write(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert reply.startswith(b"HTTP/1.1 503"), reply
            assert b"too many open connections" in reply and b"Retry-After: 1" in reply
            held.pop().close()  # one follower leaves: its slot is free within a second or so
            for _ in range(40):
                await asyncio.sleep(0.1)
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{srv.url}/ready") as resp:
                        if resp.status == 200:
                            break
            assert resp.status == 200
            for resp in held:
                resp.close()
    finally:
        srv.stop()


async def test_log_follows_are_capped_per_credential_and_in_total(tmp_path):
    srv = await started(tmp_path, "--max-follows", "5", "--max-follows-per-credential", "3")
    try:
        task_id = await running_task(srv)
        viewers = []
        for i in range(2):
            proc = await asyncio.create_subprocess_exec(
                "python", "-m", "taskd", "token", "create", "--db", str(srv.db), "--role",
                "viewer", "--name", f"v{i}", stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await proc.communicate()
            viewers.append({"Authorization": f"Bearer {out.decode().strip()}"})

        url = f"{srv.url}/api/tasks/{task_id}/logs?follow=true"
        async with aiohttp.ClientSession() as http, probing(srv) as probe:
            held = []

            async def follow(headers):
                resp = await http.get(url, headers=headers)
                if resp.status == 200:
                    held.append(resp)
                    await resp.content.readexactly(len(b"started\n"))
                    return resp.status, None
                body = await resp.json()
                resp.release()
                return resp.status, body

            for _ in range(3):
                assert (await follow(ADMIN))[0] == 200
            status, body = await follow(ADMIN)
            assert status == 429 and body["code"] == "rate_limited", body
            assert "log streams" in body["message"]
            for _ in range(2):
                assert (await follow(viewers[0]))[0] == 200
            status, body = await follow(viewers[1])  # its own first, but taskd holds 5
            assert status == 503 and body["code"] == "unavailable", body
            held.pop().close()  # a client leaves: its slot is free again within a second or so
            for _ in range(40):
                await asyncio.sleep(0.1)
                status, _ = await follow(viewers[1])
                if status == 200:
                    break
            assert status == 200
            for resp in held:
                resp.close()
        probe.check()
    finally:
        srv.stop()


async def test_a_body_sent_a_byte_at_a_time_is_cut_at_the_body_timeout(tmp_path):
    srv = await started(tmp_path, "--body-timeout", "1")
    try:
        replies = []

        async def trickle(who: str, auth: bytes) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            writer.write(b"POST /v1/dagrun HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                         b"\r\nContent-Length: 1000\r\n" + auth + b"\r\n{")  # fmt: skip
            t0 = time.monotonic()
            reply = b""
            while time.monotonic() - t0 < 10 and not reply:
                try:
                    writer.write(b" ")
                    await writer.drain()
                    reply = await asyncio.wait_for(reader.read(1000), 0.2)
                except TimeoutError:
                    continue
                except OSError:
                    break
            replies.append((who, time.monotonic() - t0, reply))
            writer.close()

        async with probing(srv) as probe:
            authorised = f"Authorization: Bearer {ADMIN['Authorization'][7:]}\r\n".encode()
            await asyncio.gather(*(trickle("admin", authorised) for _ in range(50)),
                                 trickle("nobody", b""))  # fmt: skip
        probe.check()
        slow = [(took, reply) for who, took, reply in replies if who == "admin"]
        [(_, took, reply)] = [r for r in replies if r[0] == "nobody"]
        assert reply.startswith(b"HTTP/1.1 401") and took < 1  # its body is never waited for
        assert len(slow) == 50
        for took, reply in slow:
            assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
            assert b"did not arrive within 1 seconds" in reply and took < 5
        status, runs = await srv.request("GET", "/v1/dagruns?all=1")
        assert (status, runs) == (200, [])
    finally:
        srv.stop()
