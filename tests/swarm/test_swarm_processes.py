"""Process definitions whose container tasks run as Swarm services, against a real swarm."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import datetime

import pytest

from tests.docker.test_bridge_and_readoption import drove_final
from tests.docker.test_containertasks import OPS, task_spec
from tests.docker.test_processes_docker import containers, docker_task, one_process, put_and_trigger
from tests.processes.sundial import wait_for
from tests.swarm.conftest import instance_of, services

pytestmark = pytest.mark.swarm


async def no_services(instance: str) -> None:
    """Services (and their containers) go right after the outcome is stored; allow a moment."""

    async def gone():
        return not await asyncio.to_thread(services, instance) and not await asyncio.to_thread(
            containers, instance
        )

    await wait_for(gone, within=15)


async def logs(srv, task_id: str, stream: str) -> str:
    status, text = await srv.request("GET", f"/api/tasks/{task_id}/logs", params={"stream": stream})
    assert status == 200, text
    return text


async def test_swarm_tasks_succeed_with_full_output_and_exit_codes(swarm_server, swarm_ready):
    # 2000 numbered lines, then a last line without a newline, and a few lines on stderr.
    script = "seq 1 2000; echo warn >&2; printf 'last line'; exit 0"
    doc = {"process_definition_name": "onswarm", "task_definitions": [
        docker_task("count", script, swarm_ready),
        docker_task("after", "echo after; exit 3", swarm_ready, deps=["count"]),
    ]}  # fmt: skip
    await put_and_trigger(swarm_server, doc)
    proc = await one_process(swarm_server, "onswarm", within=90)
    tasks = {t["task_definition_name"]: t for t in proc["task"]}
    assert tasks["count"]["exit_code"] == 0 and tasks["count"]["status"] == "succeeded"
    assert tasks["after"]["exit_code"] == 3 and proc["status"] == "failed"
    out = await logs(swarm_server, tasks["count"]["task_id"], "stdout")
    expected = "".join(f"{i}\n" for i in range(1, 2001)) + "last line"
    assert out == expected
    assert await logs(swarm_server, tasks["count"]["task_id"], "stderr") == "warn\n"
    assert await logs(swarm_server, tasks["after"]["task_id"], "stdout") == "after\n"
    await no_services(instance_of(swarm_server))


async def test_a_failing_swarm_task_is_retried_with_backoff(swarm_server, swarm_ready):
    doc = {"process_definition_name": "retry", "task_definitions": [
        {**docker_task("flaky", "echo try; exit 5", swarm_ready, max_attempts=2),
         "backoff_base_seconds": 2},
    ]}  # fmt: skip
    await put_and_trigger(swarm_server, doc)
    proc = await one_process(swarm_server, "retry", within=90)
    attempts = proc["task"]
    assert [t["exit_code"] for t in attempts] == [5, 5]
    assert proc["status"] == "failed"
    starts = sorted(datetime.fromisoformat(t["start_time"]) for t in attempts)
    ends = sorted(datetime.fromisoformat(t["end_time"]) for t in attempts)
    assert (starts[1] - ends[0]).total_seconds() >= 1.5  # the backoff was waited for
    await no_services(instance_of(swarm_server))


async def test_kill_removes_the_service_within_seconds(swarm_server, swarm_ready):
    doc = {"process_definition_name": "long", "task_definitions": [
        docker_task("sleeper", "trap 'echo got TERM; exit 143' TERM; echo started; "
                    "sleep 120 & wait", swarm_ready),
    ]}  # fmt: skip
    await put_and_trigger(swarm_server, doc)
    instance = instance_of(swarm_server)
    proc = await one_process(swarm_server, "long", finished=False, within=30)

    async def printed():
        _, found = await swarm_server.request(
            "GET", "/api/processes/", params={"process_definition_name": "long"}
        )
        if not found or not found[0]["task"]:
            return False
        task = found[0]["task"][0]
        return task.get("task_id") and "started" in await logs(
            swarm_server, task["task_id"], "stdout"
        )

    await wait_for(printed, within=60)
    t0 = time.monotonic()
    status, _ = await swarm_server.request("POST", f"/api/processes/{proc['process_id']}/kill")
    assert status == 204
    proc = await one_process(swarm_server, "long", within=20)
    [task] = proc["task"]
    assert task["attempt_state"] == "killed"
    # What it printed while it stopped is kept too.
    assert await logs(swarm_server, task["task_id"], "stdout") == "started\ngot TERM\n"
    await no_services(instance)
    assert time.monotonic() - t0 < 15


async def test_max_runtime_removes_an_overrunning_service(swarm_server, swarm_ready):
    doc = {"process_definition_name": "slow", "task_definitions": [
        docker_task("slow", "sleep 120", swarm_ready, max_runtime_seconds=3),
    ]}  # fmt: skip
    await put_and_trigger(swarm_server, doc)
    proc = await one_process(swarm_server, "slow", within=40)
    [task] = proc["task"]
    assert task["attempt_state"] == "timed_out" and task["status"] == "failed"
    await no_services(instance_of(swarm_server))


async def test_container_tasks_run_on_the_swarm_by_default(swarm_server, swarm_ready):
    # --container-runner swarm: a Drove task, which names no runner, runs as a service.
    spec = task_spec("ONSWARM", "echo drove on swarm; exit 0", cpus=1, image=swarm_ready)
    status, body = await swarm_server.request("POST", OPS, json=spec)
    assert status == 200, body
    final = await drove_final(swarm_server, "ONSWARM", within=60)
    assert final["taskResult"] == {"status": "SUCCESSFUL", "exitCode": 0}
    _, out = await swarm_server.request(
        "GET", "/apis/v1/logfiles/tasks/TEST_APP/ONSWARM/download/output.log"
    )
    assert out == "drove on swarm\n"
    with sqlite3.connect(swarm_server.db) as db:
        assert db.execute("SELECT runner FROM attempts").fetchall() == [("swarm",)]
    await no_services(instance_of(swarm_server))


async def test_a_swarm_job_reports_through_its_own_callbacks(swarm_server, swarm_ready):
    # taskd listens on loopback only: the job reaches it at the bridge's gateway.
    script = r"""
    wget -q -O- --header "Authorization: Bearer $TASKD_TASK_TOKEN" --post-data '' \
      "$TASKD_URL/api/tasks/$TASKD_TASK_ID/succeed" && echo succeed-ok
    """
    doc = {"process_definition_name": "explicit", "task_definitions": [
        docker_task("reporter", script, swarm_ready, require_explicit_success=True),
    ]}  # fmt: skip
    await put_and_trigger(swarm_server, doc)
    proc = await one_process(swarm_server, "explicit", within=60)
    [task] = proc["task"]
    assert await logs(swarm_server, task["task_id"], "stdout") == "succeed-ok\n"
    assert task["status"] == "succeeded", task  # exit 0 and an explicit success report
