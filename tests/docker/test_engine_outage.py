"""A Docker engine that goes away is not the job's fault: work waits for it, no budget burnt.

These tests stop and restart a private engine of their own (never the shared one), with a
real ``taskd serve`` pointed at it through DOCKER_HOST.
"""

from __future__ import annotations

import asyncio
import os
import re

import pytest

from tests.docker.test_processes_docker import docker_task, one_process, put_and_trigger
from tests.privateengine import PrivateEngine, private_engine_possible
from tests.processes.sundial import wait_for
from tests.server import Server

pytestmark = pytest.mark.docker


@pytest.fixture
def private_engine(docker_ready):
    why = private_engine_possible()
    if why:
        if os.environ.get("TASKD_REQUIRE_DOCKER") == "1":
            pytest.fail(f"TASKD_REQUIRE_DOCKER=1 but {why}", pytrace=False)
        pytest.skip(why)
    engine = PrivateEngine()
    try:
        engine.start()
        engine.load_test_image()
        yield engine
    finally:
        engine.destroy()


@pytest.fixture
async def taskd(private_engine, tmp_path):
    # The private engine has no bridge: the default network setting falls back to none.
    srv = Server(tmp_path, "--docker-network", "auto", env=private_engine.env)
    await srv.start()
    yield srv
    srv.stop()


async def metric(srv: Server, name: str, labels: str = "") -> float | None:
    status, text = await srv.request("GET", "/_internal_/metrics")
    assert status == 200, text
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" (\S+)"
    found = re.search(r"^" + pattern + "$", text, re.MULTILINE)
    return float(found[1]) if found else None


async def running_containers(engine: PrivateEngine) -> int:
    out = await asyncio.to_thread(engine._docker, "ps", "-q")
    return len(out.stdout.split())


def three_tasks(name: str, script: str, image: str) -> dict:
    return {"process_definition_name": name, "task_definitions": [
        docker_task(f"t{i}", script, image, max_attempts=1) for i in range(3)
    ]}  # fmt: skip


async def test_work_submitted_while_the_engine_is_down_waits_for_it(taskd, private_engine):
    private_engine.stop()
    await put_and_trigger(taskd, three_tasks("held", "echo ran", "taskd-test:latest"))

    async def held():
        return await metric(taskd, "taskd_tasks_held", 'runner="docker"') == 3

    await wait_for(held, within=30)
    assert await metric(taskd, "taskd_docker_engine_up") == 0
    await asyncio.sleep(2)  # held, not failing: a single allowed attempt is not used up
    proc = await one_process(taskd, "held", finished=False)
    assert proc["status"] == "running"

    await asyncio.to_thread(private_engine.start)
    proc = await one_process(taskd, "held", within=60)
    assert proc["status"] == "succeeded", proc["task"]
    finals = [t for t in proc["task"] if t["status"] == "succeeded"]
    assert sorted(t["task_definition_name"] for t in finals) == ["t0", "t1", "t2"]
    for task in finals:
        _, out = await taskd.request("GET", f"/api/tasks/{task['task_id']}/logs",
                                     params={"stream": "stdout"})  # fmt: skip
        assert out == "ran\n"
    assert await metric(taskd, "taskd_docker_engine_up") == 1
    assert await metric(taskd, "taskd_tasks_held", 'runner="docker"') == 0
    assert "the Docker engine has no bridge network" in taskd.log()


async def test_engine_restart_mid_run_burns_no_retry_budget(taskd, private_engine):
    # No live-restore: stopping the engine stops the containers; they run again once it is back.
    script = "trap 'exit 143' TERM; sleep 4 & wait; echo finished"
    await put_and_trigger(taskd, three_tasks("restart", script, "taskd-test:latest"))

    async def all_running():
        return await running_containers(private_engine) == 3

    await wait_for(all_running, within=30)
    await asyncio.to_thread(private_engine.stop)
    await asyncio.sleep(1)
    await asyncio.to_thread(private_engine.start)

    proc = await one_process(taskd, "restart", within=90)
    assert proc["status"] == "succeeded", proc["task"]
    by_name: dict[str, list[dict]] = {}
    for task in proc["task"]:
        by_name.setdefault(task["task_definition_name"], []).append(task)
    assert sorted(by_name) == ["t0", "t1", "t2"]
    for attempts in by_name.values():
        *earlier, last = sorted(attempts, key=lambda t: t["previous_attempt_count"])
        assert last["status"] == "succeeded"
        for lost in earlier:
            assert lost["attempt_state"] == "lost"
            assert "engine" in lost["reason"]
    assert await metric(taskd, "taskd_docker_engine_up") == 1


async def test_held_work_can_be_killed_while_the_engine_is_down(taskd, private_engine):
    private_engine.stop()
    await put_and_trigger(taskd, three_tasks("doomed", "echo never", "taskd-test:latest"))

    async def held():
        return await metric(taskd, "taskd_tasks_held", 'runner="docker"') == 3

    await wait_for(held, within=30)
    proc = await one_process(taskd, "doomed", finished=False)
    status, _ = await taskd.request("POST", f"/api/processes/{proc['process_id']}/kill")
    assert status == 204
    proc = await one_process(taskd, "doomed", within=15)  # ends without the engine
    assert proc["status"] == "failed"
    assert await metric(taskd, "taskd_tasks_held", 'runner="docker"') == 0
