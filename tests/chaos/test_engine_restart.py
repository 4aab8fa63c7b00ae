"""Chaos for the Docker engine: stopped and restarted mid-run, no retry budget burnt.

A mixed container workload (Daggy DAG runs, Drove tasks, a Sundial process; every task allowed
a single attempt) runs against a real ``taskd serve`` on a private engine, which is stopped
and started again several times at seeded random moments; once taskd is SIGKILLed just before
and comes back while the engine is still down. Every job must finish successfully,
and the only attempts that did not are the ones the engine's outages ended, recorded as such.
The shared engine is never touched.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import sqlite3

import pytest

from tests.docker.test_engine_outage import metric, private_engine, taskd  # noqa: F401
from tests.docker.test_processes_docker import docker_task, one_process, put_and_trigger
from tests.processes.sundial import wait_for
from tests.server import TOKEN

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGE = "taskd-test:latest"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"admin:{TOKEN}".encode()).decode()}


def dag(n: int) -> dict:
    def job(seconds: float) -> dict:
        return {"command": ["sh", "-c", f"sleep {seconds}; echo dag-{n}"], "image": IMAGE}

    return {"tag": f"engine-{n}", "tasks": {
        "a": {"job": job(0.5), "children": ["b", "c"]},
        "b": {"job": job(1.5), "children": ["d"]},
        "c": {"job": job(2), "children": ["d"]},
        "d": {"job": job(0.5)},
    }}  # fmt: skip


def drove(task_id: str) -> dict:
    return {"type": "CREATE", "spec": {
        "sourceAppName": "ENGINE", "taskId": task_id,
        "executable": {"type": "DOCKER", "url": IMAGE, "dockerPullTimeout": "100 seconds"},
        "resources": [{"type": "CPU", "count": 1}, {"type": "MEMORY", "sizeInMB": 32}],
        "args": ["sh", "-c", "trap 'exit 143' TERM; sleep 2 & wait; echo done"],
    }, "opSpec": {"timeout": "5m"}}  # fmt: skip


@pytest.mark.timeout(600)
async def test_engine_restarts_mid_run_every_job_finishes(taskd, private_engine):  # noqa: F811
    seed = int(os.environ.get("TASKD_CHAOS_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"engine chaos seed {seed}")
    rng = random.Random(seed)

    runs = []
    for n in range(3):
        status, body = await taskd.request("POST", "/v1/dagrun", json=dag(n))
        assert status == 200, body
        runs.append(body["runID"])
    for i in range(4):
        status, body = await taskd.request("POST", "/apis/v1/tasks/operations",
                                           json=drove(f"d{i}"), headers=BASIC)  # fmt: skip
        assert status == 200, body
    script = "trap 'exit 143' TERM; sleep 2 & wait; echo process"
    await put_and_trigger(taskd, {"process_definition_name": "engine", "task_definitions": [
        docker_task(f"p{i}", script, IMAGE, max_attempts=1) for i in range(3)
    ]})  # fmt: skip

    for round_ in range(3):
        await asyncio.sleep(rng.uniform(0.5, 2.5))
        if round_ == 1:
            # taskd crashes first: it comes back while the engine is down and must take over
            # the containers the engine's shutdown stopped meanwhile.
            taskd.kill9()
        await asyncio.to_thread(private_engine.stop)
        await asyncio.sleep(rng.uniform(0.3, 1.5))
        if round_ == 1:
            await taskd.start()
        await asyncio.to_thread(private_engine.start)

    async def dag_state(run_id: int) -> str:
        _, body = await taskd.request("GET", f"/v1/dagrun/{run_id}/state")
        return body["state"]

    async def dags_ended():
        states = [await dag_state(r) for r in runs]
        return states if all(s not in ("QUEUED", "RUNNING") for s in states) else None

    assert await wait_for(dags_ended, within=240) == ["COMPLETED"] * 3

    async def drove_ended():
        found = []
        for i in range(4):
            _, body = await taskd.request("GET", f"/apis/v1/tasks/ENGINE/instances/d{i}")
            found.append(body["data"])
        return found if all(f["state"] == "STOPPED" for f in found) else None

    for info in await wait_for(drove_ended, within=240):
        assert info["taskResult"] == {"status": "SUCCESSFUL", "exitCode": 0}, info
    proc = await one_process(taskd, "engine", within=240)
    assert proc["status"] == "succeeded", proc["task"]

    with sqlite3.connect(taskd.db) as db:
        attempts = db.execute("SELECT state, succeeded, reason FROM attempts").fetchall()
    failed = [(state, reason) for state, ok, reason in attempts if not ok]
    # Whatever did not succeed was ended by an outage, and recorded as such.
    assert all(state == "lost" and "engine" in reason for state, reason in failed), failed
    print(f"engine chaos: {len(attempts)} attempts, {len(failed)} ended by the engine's outages")
    assert await metric(taskd, "taskd_docker_engine_up") == 1
