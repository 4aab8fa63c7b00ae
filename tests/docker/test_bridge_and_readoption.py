"""Containers on Docker's default bridge call taskd back; Drove tasks survive a taskd crash."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from tests.docker.test_containertasks import OPS, task_spec
from tests.docker.test_processes_docker import (
    _running_containers,
    containers,
    docker_task,
    instance_of,
    no_containers,
    one_process,
    put_and_trigger,
)
from tests.dockerutil import remove_labelled
from tests.processes.sundial import wait_for
from tests.server import Server

pytestmark = pytest.mark.docker


@pytest.fixture
async def make_server(tmp_path, docker_ready):
    made: list[Server] = []

    async def make(*args: str) -> Server:
        workdir = tmp_path / f"srv{len(made)}"
        workdir.mkdir()
        srv = Server(workdir, *args)
        await srv.start()
        made.append(srv)
        return srv

    yield make
    for srv in made:
        instance = instance_of(srv)
        srv.stop()
        await asyncio.to_thread(remove_labelled, f"taskd.instance={instance}")


CALLBACKS = r"""
auth="Authorization: Bearer $TASKD_TASK_TOKEN"
base="$TASKD_URL/api/tasks/$TASKD_TASK_ID"
echo "url=$TASKD_URL"
wget -q -O- --header "$auth" --header 'Content-Type: application/json' \
  --post-data '[{"log_entry_id":"2b7d0f7e-7a4c-4b1e-9d59-3c1a2b3c4d5e","when":"2026-01-01T00:00:00.000Z","source":"job","message":"on the bridge"}]' \
  "$base/log_entries" && echo log-ok
wget -q -O- --header "$auth" --header 'Content-Type: application/json' \
  --post-data '[{"metadata_entry_id":"9a7d0f7e-7a4c-4b1e-9d59-3c1a2b3c4d5e","when":"2026-01-01T00:00:00.000Z","key":"rows","value":"7"}]' \
  "$base/metadata" && echo meta-ok
wget -q -O- --header "$auth" --post-data '' "$base/succeed" && echo succeed-ok
wget -q -O- --header "$auth" "$TASKD_URL/api/process_definitions/" && echo read-ok
exit 0
"""


async def test_callbacks_work_on_the_default_bridge_network(make_server, test_image):
    # The default network setting: Docker's bridge, and no --public-url.
    srv = await make_server("--docker-network", "auto")
    doc = {"process_definition_name": "bridge", "task_definitions": [
        docker_task("reporter", CALLBACKS, test_image, require_explicit_success=True),
    ]}  # fmt: skip
    await put_and_trigger(srv, doc)
    proc = await one_process(srv, "bridge")
    [task] = proc["task"]
    assert task["status"] == "succeeded", task  # exit 0 and a success report that arrived
    assert [e["message"] for e in task["log_entries"]] == ["on the bridge"]
    assert [(m["key"], m["value"]) for m in task["metadata_entries"]] == [("rows", "7")]
    _, out = await srv.request("GET", f"/api/tasks/{task['task_id']}/logs",
                               params={"stream": "stdout"})  # fmt: skip
    lines = out.split()
    assert not lines[0].startswith("url=http://127.0.0.1"), lines[0]
    # The gateway listener serves the task callbacks and nothing else.
    assert lines[1:] == ["log-ok", "meta-ok", "succeed-ok"]
    # The main listener still answers on loopback only: the gateway one is an addition.
    status, _ = await srv.request("GET", "/api/process_definitions/")
    assert status == 200


async def test_a_drove_task_whose_container_outlived_taskd_is_adopted(make_server):
    srv = await make_server()
    spec = task_spec("ADOPT", "sleep 2; echo survived", cpus=1)
    status, body = await srv.request("POST", OPS, json=spec)
    assert status == 200, body
    instance = instance_of(srv)
    await wait_for(lambda: _running_containers(instance), within=20)
    srv.kill9()
    assert await asyncio.to_thread(containers, instance, False)  # it outlived taskd
    await srv.start()
    final = await drove_final(srv, "ADOPT")
    assert final["state"] == "STOPPED"
    assert final["taskResult"] == {"status": "SUCCESSFUL", "exitCode": 0}
    status, out = await srv.request(
        "GET", "/apis/v1/logfiles/tasks/TEST_APP/ADOPT/download/output.log"
    )
    assert out == "survived\n"
    assert attempts(srv) == ["exited"]  # watched again, not started twice
    await no_containers(instance)


async def test_a_drove_task_whose_container_vanished_with_taskd_starts_once_more(make_server):
    srv = await make_server()
    spec = task_spec("AGAIN", "echo run; sleep 30", cpus=1)
    status, body = await srv.request("POST", OPS, json=spec)
    assert status == 200, body
    instance = instance_of(srv)
    await wait_for(lambda: _running_containers(instance), within=20)
    srv.kill9()
    await asyncio.to_thread(remove_labelled, f"taskd.instance={instance}")
    await srv.start()

    async def running_again():
        _, found = await srv.request("GET", "/apis/v1/tasks/TEST_APP/instances/AGAIN")
        return found["data"]["state"] == "RUNNING" and await _running_containers(instance)

    await wait_for(running_again, within=30)
    status, found = await srv.request("GET", "/apis/v1/tasks/TEST_APP/instances/AGAIN")
    assert found["data"]["state"] != "LOST"
    kill = {"type": "KILL", "sourceAppName": "TEST_APP", "taskId": "AGAIN",
            "opSpec": {"timeout": "30 seconds"}}  # fmt: skip
    status, body = await srv.request("POST", OPS, json=kill)
    assert status == 200, body
    final = await drove_final(srv, "AGAIN")
    assert final["state"] == "STOPPED"
    assert attempts(srv) == ["lost", "killed"]  # started once more after the loss


async def drove_final(srv: Server, task_id: str, within: float = 40.0) -> dict:
    deadline = time.monotonic() + within
    seen = []
    while True:
        status, found = await srv.request("GET", f"/apis/v1/tasks/TEST_APP/instances/{task_id}")
        assert status == 200, found
        state = found["data"]["state"]
        if not seen or seen[-1] != state:
            seen.append(state)
        assert state != "LOST", seen
        if state == "STOPPED":
            return found["data"]
        assert time.monotonic() < deadline, f"{task_id} still {state} (seen {seen})"
        await asyncio.sleep(0.1)


def attempts(srv: Server) -> list[str]:
    with sqlite3.connect(srv.db) as db:
        return [r[0] for r in db.execute("SELECT state FROM attempts ORDER BY number")]
