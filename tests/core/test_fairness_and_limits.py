"""Capacity fairness (a big job is not starved by a stream of small ones) and generator output
too large to be kept whole."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid

import orjson

from taskd.app import Services
from taskd.models import JobSpec, RunKind, TaskTemplate
from taskd.store.runs import RunPlan
from tests.dagruns.test_dagruns import Api, job


def one(name: str, job: JobSpec) -> RunPlan:
    return RunPlan(kind=RunKind.DAG, name=name, trigger="api", uuid=str(uuid.uuid4()),
                   tasks=[TaskTemplate(name, job)])  # fmt: skip


async def test_a_big_job_is_not_starved_by_a_stream_of_small_ones(settings):
    services = await Services.open(dataclasses.replace(settings, cpus=2.0))
    await services.engine.start()
    engine = services.engine
    engine.fair_wait = 0.5
    small = JobSpec(runner="local", script="sleep 0.6", cpus=1.0)
    big = JobSpec(runner="local", script="true", cpus=2.0)
    try:
        await engine.submit(one("small", small))
        big_run = await engine.submit(one("big", big))
        # Small jobs keep coming, so one of them always holds a CPU if nothing reserves room.
        stream_end = time.monotonic() + 8
        while time.monotonic() < stream_end and not big_run.done.is_set():
            await engine.submit(one("small", small))
            await asyncio.sleep(0.3)
        assert big_run.done.is_set(), "the big job never started while small ones kept coming"
    finally:
        await engine.stop()
        await services.close()


async def test_generator_output_too_large_to_keep_whole_is_refused_clearly(
    make_client, admin_headers, tmp_path
):
    api = Api(await make_client(log_head_bytes=4096, log_tail_bytes=4096), admin_headers)
    output = tmp_path / "generated.json"
    tasks = {f"t{i}": {"job": job("/bin/echo", "x" * 50)} for i in range(200)}
    output.write_text(orjson.dumps(tasks).decode())
    assert output.stat().st_size > 8192
    dag = {"tasks": {"gen": {"job": job("/bin/cat", str(output)), "isGenerator": True}}}
    run = await api.finished(await api.submit(dag))
    assert run["taskStates"] == {"gen": "ERRORED"}
    (attempt,) = run["taskAttempts"]["gen"]
    assert "generator output rejected" in attempt["executorLog"]
    assert "taskd keeps at most 8192 bytes" in attempt["executorLog"]
