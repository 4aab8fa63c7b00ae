"""Retention of run history and output: by age and by count per name, in small batches that
never hold the writer for a whole pass, never touching active runs or re-opening old slots."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid

from taskd.engine import retention as retention_mod
from taskd.engine.retention import Retention
from taskd.log import capture as capture_logs
from taskd.models import JobSpec, RunKind, TaskTemplate
from taskd.processes import store as dq
from taskd.store import retention as rq
from taskd.store.runs import RunPlan

NO_RULES = dict(keep_runs_days=0, keep_runs_per_definition=0, log_retention_days=0,
                log_retention_runs=0)  # fmt: skip


def plan(name: str, script: str, kind: str = RunKind.DAG) -> RunPlan:
    job = JobSpec(runner="local", script=script)
    return RunPlan(kind=kind, name=name, trigger="api", uuid=str(uuid.uuid4()),
                   tasks=[TaskTemplate("t", job)])  # fmt: skip


async def count(services, table: str, where: str = "1") -> int:
    return await services.store.read(
        lambda db: db.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}").fetchone()[0]
    )


def retention(services, **rules) -> Retention:
    settings = dataclasses.replace(services.settings, **{**NO_RULES, **rules})
    return Retention(settings, services.store, lambda: set(services.engine.runs))


async def run_to_end(services, name: str, script: str = "echo out", **kw):
    run = await services.engine.submit(plan(name, script), **kw)
    await asyncio.wait_for(run.done.wait(), 30)
    return run


async def test_history_beyond_the_newest_runs_of_a_name_is_deleted_in_batches(
    services, monkeypatch
):
    monkeypatch.setattr(retention_mod, "BATCH", 2)  # several transactions for five runs
    runs = [await run_to_end(services, "busy") for _ in range(5)]
    other = await run_to_end(services, "quiet")
    active = await services.engine.submit(plan("busy", "sleep 30"))
    done = await retention(services, keep_runs_per_definition=2).run_pass()
    assert done["runs"] == 3
    left = await services.store.read(
        lambda db: [r[0] for r in db.execute("SELECT id FROM runs ORDER BY id")]
    )
    assert left == [runs[3].id, runs[4].id, other.id, active.id]
    # everything hanging off the deleted runs went with them
    gone = ",".join(str(r.id) for r in runs[:3])
    for table in ("tasks", "attempts", "state_changes"):
        assert await count(services, table, f"run_id IN ({gone})") == 0
    assert await count(services, "output_chunks") == 3  # the two kept runs' and quiet's
    await services.engine.kill_run(active.id)


async def test_history_older_than_its_age_goes_but_the_newest_slot_stays(services):
    name = "every-second"
    slots = [1_000_000_000 * i for i in range(1, 6)]
    runs = []
    for slot in slots:

        def fire(db, run_id, slot=slot):
            dq.fire_slot(db, name, slot, run_id, slot)

        run = await services.engine.submit(plan(name, "true", RunKind.PROCESS), fire)
        await asyncio.wait_for(run.done.wait(), 30)
        runs.append(run)
    await services.store.write(dq.record_slots, name, [(500_000_000, "missed")], 1)
    newest = await services.store.read(dq.last_slots)
    time.sleep(0.01)
    done = await retention(services, keep_runs_days=0.001 / 86400).run_pass()
    # The newest run of a name stays (a continuous schedule counts from it) ...
    assert done["runs"] == 4
    assert await count(services, "runs") == 1
    # ... and so does the newest ledger slot: the scheduler resumes after it, so no old slot
    # can fire again. Ledger rows of deleted runs and old missed slots are gone.
    assert await services.store.read(dq.last_slots) == newest
    ledger = await services.store.read(
        lambda db: [tuple(r) for r in db.execute("SELECT slot, status FROM ledger")]
    )
    assert ledger == [(slots[-1], "fired")]


async def test_output_age_pass_starts_from_its_watermark(services):
    first = await run_to_end(services, "a")
    time.sleep(0.01)
    done = await retention(services, log_retention_days=0.001 / 86400).run_pass()
    assert done["output_chunks"] == 1
    mark = await services.store.read(rq.output_watermark)
    assert mark == (await services.store.read(
        lambda db: db.execute("SELECT ended_at FROM runs WHERE id = ?", (first.id,)).fetchone()[0]
    ))  # fmt: skip
    # Runs that ended before the watermark are not looked at again.
    assert await services.store.read(rq.ended_between, mark, first.id, time.time_ns(), 10) == []


async def test_retention_finds_runs_by_an_index_not_a_scan(services):
    def plans(db):
        out = {}
        for name, sql, args in (
            ("aged", "SELECT id FROM runs WHERE ended_at < ? ORDER BY ended_at LIMIT 1", (1,)),
            ("ledger", "DELETE FROM ledger WHERE run_id IN (?)", (1,)),
        ):
            rows = db.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
            out[name] = " ".join(r["detail"] for r in rows)
        return out

    found = await services.store.read(plans)
    assert "runs_ended" in found["aged"]
    assert "ledger_run" in found["ledger"]


async def test_a_write_holding_the_writer_long_is_logged(services):
    def slow(db):
        time.sleep(0.3)  # stands for a big delete: the log must name it
        db.execute("SELECT 1")

    with capture_logs() as logs:
        await services.store.write(slow)
    [entry] = [e for e in logs if e["event"] == "slow write held the writer"]
    assert entry["seconds"] >= 0.1 and "slow" in entry["slowest"]


async def test_one_output_pass_prunes_every_aged_run_while_its_batches_grow(services):
    # A pass starts with small batches and grows them while deletes are quick: growing must
    # not end the pass early (it once stopped after the first batch, leaving the rest of the
    # aged output for later passes, an hour apart by default).
    runs = [await run_to_end(services, f"r{i}") for i in range(3 * retention_mod.FIRST)]
    time.sleep(0.01)
    done = await retention(services, log_retention_days=0.001 / 86400).run_pass()
    assert done["output_chunks"] == len(runs)
    assert await count(services, "output_chunks") == 0
