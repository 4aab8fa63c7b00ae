"""The scheduler against the real clock, real SQLite and local processes."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import orjson

from taskd.app import Services
from tests.processes.sundial import H, definition, processes, put, shell, sql, wait_for

EVERY_SECOND = {"cron_schedule": {"seconds": "*/1", "minutes": "*", "hours": "*",
                                  "day_of_month": "*", "month": "*", "day_of_week": "?"}}  # fmt: skip


async def ledger(client) -> list[dict]:
    return await sql(client, "SELECT * FROM ledger ORDER BY slot")


async def runs_table(client) -> list[dict]:
    return await sql(client, "SELECT * FROM runs ORDER BY id")


async def test_per_second_cron_fires_on_time_and_pause_resume(make_client):
    client = await make_client()
    await put(client, definition("tick", shell("a", "true"), schedule=EVERY_SECOND))
    found = await wait_for(lambda: _at_least(client, "tick", 3), within=10)
    runs = await runs_table(client)
    for run in runs:
        slot = orjson.loads(run["extra"])["slot"]
        lateness = (run["created_at"] - slot) / 1e9
        assert 0 <= lateness < 0.25, lateness  # generous; the benchmark measures precision
    resp = await client.post("/api/process_definitions/tick/pause", headers=H)
    assert resp.status == 204
    await asyncio.sleep(0.3)
    paused_count = len(await processes(client, "tick"))
    await asyncio.sleep(2.2)
    assert len(await processes(client, "tick")) == paused_count
    resp = await client.get("/api/process_definitions/tick", headers=H)
    assert (await resp.json())["paused"] is True
    resp = await client.post("/api/process_definitions/tick/resume", headers=H)
    assert resp.status == 204
    await wait_for(lambda: _at_least(client, "tick", paused_count + 2), within=10)
    slots = [row["slot"] for row in await ledger(client) if row["status"] == "fired"]
    assert len(slots) == len(set(slots)) == len(await runs_table(client))
    assert found


async def _at_least(client, name, n):
    found = await processes(client, name)
    return found if len(found) >= n else None


async def test_continuous_schedule_counts_from_the_previous_start(make_client):
    client = await make_client()
    await put(
        client,
        definition(
            "loop", shell("a", "true"), schedule={"continuous_schedule": {"buffer_seconds": 1}}
        ),
    )
    await wait_for(lambda: _at_least(client, "loop", 3), within=10)
    runs = await runs_table(client)
    gaps = [(b["created_at"] - a["created_at"]) / 1e9 for a, b in itertools.pairwise(runs)]
    assert all(0.95 <= g < 1.5 for g in gaps), gaps


async def test_overlap_wait_never_runs_two_at_once(make_client):
    client = await make_client()
    await put(client, definition("slow", shell("a", "sleep 1.5"), schedule=EVERY_SECOND,
                                 overlap_action="wait"))  # fmt: skip
    await wait_for(lambda: _at_least(client, "slow", 3), within=15)
    await client.post("/api/process_definitions/slow/pause", headers=H)
    runs = await runs_table(client)
    for a, b in itertools.pairwise(runs):
        if a["ended_at"] is not None:
            assert b["created_at"] >= a["ended_at"]
    rows = await ledger(client)
    assert {r["status"] for r in rows} >= {"fired", "missed"}  # slots collapsed while waiting
    fired = [r["slot"] for r in rows if r["status"] == "fired"]
    assert len(fired) == len(set(fired))


async def test_overlap_terminate_kills_the_running_process(make_client):
    client = await make_client()
    await put(client, definition("term", shell("a", "sleep 30"), schedule=EVERY_SECOND,
                                 overlap_action="terminate"))  # fmt: skip
    await wait_for(lambda: _at_least(client, "term", 3), within=15)
    await client.post("/api/process_definitions/term/pause", headers=H)

    async def older_ended():
        # A replaced process ends a moment after its successor starts (its job is stopping).
        found = await processes(client, "term")
        older = found[1:]
        return older if all(p["status"] != "running" for p in older) else None

    older = await wait_for(older_ended, within=10)
    assert len(older) >= 2
    assert all(p["status"] == "failed" and p["killed"] for p in older)
    running = [p for p in await processes(client, "term") if p["status"] == "running"]
    assert len(running) <= 1


async def test_manual_trigger_waits_for_the_running_process(make_client):
    client = await make_client()
    await put(client, definition("m", shell("a", "sleep 0.8")))
    for _ in range(2):
        resp = await client.post("/api/process_definitions/m/trigger", headers=H)
        assert resp.status == 204
    found = await wait_for(lambda: _done(client, "m", 2), within=10)
    first, second = sorted(found, key=lambda p: p["start_time"])
    assert second["start_time"] >= first["end_time"]


async def _done(client, name, n):
    found = await processes(client, name)
    return found if len(found) >= n and all(p["status"] != "running" for p in found) else None


async def test_missed_slots_after_downtime_collapse_into_one_run(settings):
    services = await Services.open(settings)
    await services.engine.start()
    await services.scheduler.start()
    from taskd.processes import definitions as defs
    from taskd.processes import store as dq

    every_minute = {"cron_schedule": {"minutes": "*", "hours": "*", "day_of_month": "*",
                                      "month": "*", "day_of_week": "?"}}  # fmt: skip
    doc = defs.parse_definition(definition("m", shell("a", "true"), schedule=every_minute), "m")
    ten_ago = int((datetime.now(UTC) - timedelta(minutes=10, seconds=30)).timestamp() * 1e9)
    await services.store.write(dq.put, "m", doc, ten_ago)
    await services.scheduler.stop()
    await services.engine.stop()
    await services.close()

    # taskd comes back ten minutes later: ten slots are due at once.
    services = await Services.open(settings)
    await services.engine.start()
    await services.scheduler.start()
    try:

        async def settled():
            rows = await services.store.read(
                lambda db: [dict(r) for r in db.execute("SELECT status FROM ledger")]
            )
            # The missed slots are recorded before the one fire commits: wait for both.
            fired = any(r["status"] == "fired" for r in rows)
            return rows if len(rows) >= 10 and fired else None

        rows = await wait_for(settled, within=10)
        statuses = [r["status"] for r in rows]
        assert statuses.count("fired") == 1
        assert statuses.count("missed") >= 9
        runs = await services.store.read(lambda db: db.execute("SELECT COUNT(*) FROM runs")
                                         .fetchone()[0])  # fmt: skip
        assert runs == 1
    finally:
        await services.scheduler.stop()
        await services.engine.stop()
        await services.close()
