"""Background work is supervised: a crashed part restarts with backoff, is logged and counted,
and ``GET /ready`` answers 503 naming it while it is down. Small defects of the same issue:
log reads leaving events behind, submits during shutdown, timeouts outside the envelope."""

from __future__ import annotations

import sqlite3

from aiohttp import web

from taskd.app import create_app
from taskd.http.keys import SERVICES
from tests.processes.sundial import H, definition, finished_process, put, shell, trigger, wait_for
from tests.server import Server


def rename_table(db, old: str, new: str) -> None:
    conn = sqlite3.connect(db, timeout=30)
    try:
        conn.execute(f"ALTER TABLE {old} RENAME TO {new}")
        conn.commit()
    finally:
        conn.close()


async def test_a_crashed_retention_pass_is_restarted_and_ready_says_so(tmp_path):
    server = Server(tmp_path, "--retention-interval", "0.2")
    await server.start()
    try:
        # A real fault: the table each pass reads its watermark from disappears.
        rename_table(server.db, "meta", "meta_away")

        async def degraded():
            status, body = await server.request("GET", "/ready")
            return status == 503 and body

        body = await wait_for(degraded, within=20)
        assert "retention" in body["error"]
        assert any("no such table: meta" in e for e in body["errors"])
        _, metrics = await server.request("GET", "/_internal_/metrics")
        assert 'taskd_background_restarts_total{part="retention"}' in metrics

        rename_table(server.db, "meta_away", "meta")

        async def healthy():
            status, body = await server.request("GET", "/ready")
            return status == 200 and body

        assert await wait_for(healthy, within=60) == {"msg": "Ya like DAGs?"}
    finally:
        server.stop()
    log = server.log()
    assert "background work crashed; restarting" in log
    assert "Traceback" in log  # logged with its traceback


async def test_reading_an_ended_attempts_logs_leaves_nothing_behind(make_client):
    client = await make_client()
    await put(client, definition("p", shell("a", "echo hello")))
    await trigger(client, "p")
    [proc] = await finished_process(client, "p")
    task_id = proc["task"][0]["task_id"]
    followers = client.server.app[SERVICES].engine.followers
    for _ in range(50):
        resp = await client.get(f"/api/tasks/{task_id}/logs", headers=H)
        assert resp.status == 200
        assert "hello" in await resp.text()
    assert len(followers) == 0


async def test_a_submit_during_shutdown_is_503_in_the_envelope(make_client):
    client = await make_client()
    engine = client.server.app[SERVICES].engine
    await put(client, definition("p", shell("a", "true")))
    engine._closing = True  # what stop() sets first; requests still in flight then see it
    try:
        resp = await client.post("/api/process_definitions/p/trigger", headers=H)
        assert resp.status == 503
        assert "shutting down" in (await resp.json())["message"]
        resp = await client.post(
            "/v1/dagrun/", json={"tag": "t", "tasks": {"a": {"job": {"command": ["true"]}}}},
            headers=H,
        )  # fmt: skip
        assert resp.status == 503
        assert "shutting down" in (await resp.json())["error"]
    finally:
        engine._closing = False


async def test_a_timeout_is_answered_in_the_familys_envelope(aiohttp_client, settings):
    app = create_app(settings)

    async def slow_backend(request: web.Request) -> web.Response:
        raise TimeoutError  # what an awaited backend call raises when it gives up

    # A fault no request can cause on purpose: routes in each family's space that time out.
    for path in ("/apis/drove/timeout", "/v1/timeout", "/api/timeout"):
        app.router.add_get(path, slow_backend)
    client = await aiohttp_client(app)
    resp = await client.get("/apis/drove/timeout", headers=H)
    assert resp.status == 503
    assert (await resp.json())["status"] == "FAILED"
    resp = await client.get("/v1/timeout", headers=H)
    assert resp.status == 503 and "error" in await resp.json()
    resp = await client.get("/api/timeout", headers=H)
    assert resp.status == 503 and (await resp.json())["code"] == "unavailable"
