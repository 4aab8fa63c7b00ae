"""Drove compatibility: every example of Drove's task API document, replayed against taskd and
checked field by field (shape, status code, semantics), with real containers.

The examples authenticate as Drove's stock ``admin:admin``; taskd accepts that only when its
admin token is ``admin`` (``--admin-token admin``), which these replays set. The examples'
image (``ghcr.io/appform-io/test-task``) cannot be pulled here; the local test image stands in.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from typing import Any

import pytest

from tests.conftest import ADMIN
from tests.dagruns.test_compat_daggy import same_shape
from tests.docker.test_containertasks import drove  # noqa: F401  (fixture)

pytestmark = pytest.mark.docker

SEED_AUTH = {"Authorization": "Basic YWRtaW46YWRtaW4="}  # admin:admin, as in every example
OPS = "/apis/v1/tasks/operations"

# The examples' requests and responses, as the document shows them.
KILL_REQUEST = {
    "type": "KILL",
    "sourceAppName": "TEST_APP",
    "taskId": "T0012",
    "opSpec": {"timeout": "5m", "parallelism": 1, "failureStrategy": "STOP"},
}
KILL_RESPONSE = {"status": "SUCCESS", "data": {"taskId": "T0012"}, "message": "success"}


def seed_task_info(task_id: str, state: str) -> dict[str, Any]:
    info = {
        "sourceAppName": "TEST_APP",
        "taskId": task_id,
        "instanceId": "TI-c2140806-2bb5-4ed3-9bb9-0c0c5fd0d8d6",
        "executorId": "a45442a1-d4d0-3479-ab9e-3ed0aa5f7d2d",
        "hostname": "ppessdev",
        "executable": {
            "type": "DOCKER",
            "url": "ghcr.io/appform-io/test-task",
            "dockerPullTimeout": "100 seconds",
        },
        "resources": [
            {"type": "CPU", "cores": {"0": [2]}},
            {"type": "MEMORY", "memoryInMB": {"0": 512}},
        ],
        "volumes": [],
        "env": {"ITERATIONS": "10"},
        "state": state,
        "metadata": {},
        "errorMessage": "",
        "created": 1719827035480,
        "updated": 1719827038414,
    }
    if state == "STOPPED":
        info["taskResult"] = {"status": "SUCCESSFUL", "exitCode": 0}
    return info


def create_op(task_id: str, script: str, **spec: Any) -> dict[str, Any]:
    """A CREATE as Drove's task operations document writes it."""
    doc = {
        "sourceAppName": "TEST_APP",
        "taskId": task_id,
        "executable": {
            "type": "DOCKER",
            "url": "taskd-test:latest",
            "dockerPullTimeout": "100 seconds",
        },
        "resources": [{"type": "CPU", "count": 1}, {"type": "MEMORY", "sizeInMB": 512}],
        "volumes": [],
        "env": {"ITERATIONS": "10"},
        "args": ["sh", "-c", script],
        "tags": {},
    }
    doc.update(spec)
    return {
        "type": "CREATE",
        "spec": doc,
        "opSpec": {"timeout": "5m", "parallelism": 1, "failureStrategy": "STOP"},
    }


async def call(client, method: str, path: str, **kw: Any) -> Any:
    resp = await client.request(method, path, headers=SEED_AUTH, **kw)
    assert resp.status == 200, (method, path, resp.status, await resp.text())
    return await resp.json()


async def state_of(client, task_id: str, states: set[str], within: float = 20.0) -> dict:
    deadline = time.monotonic() + within
    while True:
        doc = await call(client, "GET", f"/apis/v1/tasks/TEST_APP/instances/{task_id}")
        if doc["status"] == "SUCCESS" and doc["data"]["state"] in states:
            return doc
        assert time.monotonic() < deadline, doc
        await asyncio.sleep(0.05)


def task_info_matches(seed: dict, got: dict, image: str = "taskd-test:latest") -> None:
    """Field by field: the example's shape, its values where they do not depend on the host."""
    same_shape(seed, got)
    for key in ("sourceAppName", "taskId", "volumes", "env", "state", "metadata"):
        assert got[key] == seed[key], key
    assert got["executable"] == {**seed["executable"], "url": image}
    assert re.fullmatch(r"TI-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}",
                        got["instanceId"])  # fmt: skip
    assert got["resources"][1] == seed["resources"][1]  # 512 MB, on NUMA node 0
    assert len(got["resources"][0]["cores"]["0"]) == 1  # one pinned core, like the example
    assert got["errorMessage"] == "" and got.get("taskResult") == seed.get("taskResult")
    now = time.time() * 1000
    assert now - 120_000 < got["created"] <= got["updated"] <= now + 1000  # epoch ms


async def test_every_example_of_the_task_api_document(drove):  # noqa: F811
    client = await drove(admin_token="admin")

    # Issue task operation: KILL of a running T0012.
    assert (await call(client, "POST", OPS, json=create_op("T0012", "sleep 60"))) == {
        "status": "SUCCESS",
        "data": {"taskId": "TEST_APP-T0012"},
        "message": "success",
    }
    await state_of(client, "T0012", {"RUNNING"})
    assert await call(client, "POST", OPS, json=KILL_REQUEST) == KILL_RESPONSE
    killed = (await call(client, "GET", "/apis/v1/tasks/TEST_APP/instances/T0012"))["data"]
    assert killed["state"] == "STOPPED"
    assert killed["taskResult"] == {"status": "CANCELLED", "exitCode": -1}

    # List all tasks: T0013 running.
    await call(client, "POST", OPS, json=create_op("T0013", "sleep 60"))
    await state_of(client, "T0013", {"RUNNING"})
    listed = await call(client, "GET", "/apis/v1/tasks")
    assert listed["status"] == "SUCCESS" and listed["message"] == "success"
    (item,) = listed["data"]  # finished tasks are not listed, as in Drove
    task_info_matches(seed_task_info("T0013", "RUNNING"), item)

    # Get task instance details: T0012 stopped after a successful run.
    deleted = await call(client, "DELETE", "/apis/v1/tasks/TEST_APP/instances/T0012")
    assert deleted == {"status": "SUCCESS", "data": {"deleted": True}, "message": "success"}
    await call(client, "POST", OPS, json=create_op("T0012", "sleep 0.3"))
    doc = await state_of(client, "T0012", {"STOPPED"})
    assert set(doc) == {"status", "data", "message"} and doc["message"] == "success"
    task_info_matches(seed_task_info("T0012", "STOPPED"), doc["data"])

    # Search for task: Drove's form fields.
    resp = await client.post(
        "/apis/v1/tasks/search",
        data={"taskSearchAppName": "TEST_APP", "taskSearchTaskID": "T0013"},
        headers=SEED_AUTH,
    )
    assert resp.status == 200
    assert [t["taskId"] for t in (await resp.json())["data"]] == ["T0013"]
    await call(client, "POST", OPS, json={**KILL_REQUEST, "taskId": "T0013"})


async def test_drove_default_credentials_are_refused_naming_the_option(drove):  # noqa: F811
    client = await drove()
    resp = await client.get("/apis/v1/tasks", headers=SEED_AUTH)
    assert resp.status == 401
    body = await resp.json()
    assert body["status"] == "FAILED"
    assert "--admin-token admin" in body["message"] and "TASKD_ADMIN_TOKEN" in body["message"]
    token = base64.b64encode(f"admin:{ADMIN}".encode()).decode()
    resp = await client.get("/apis/v1/tasks", headers={"Authorization": f"Basic {token}"})
    assert resp.status == 200


async def test_ping_validate_and_missing_tasks_answer_as_drove(drove):  # noqa: F811
    client = await drove(admin_token="admin")
    assert await call(client, "GET", "/apis/v1/ping") == {
        "status": "SUCCESS",
        "data": "pong",
        "message": "success",
    }
    spec = create_op("V1", "true")["spec"]
    assert await call(client, "POST", "/apis/v1/tasks/validate/spec", json=spec) == {
        "status": "SUCCESS",
        "message": "success",
    }
    resp = await client.post(
        "/apis/v1/tasks/validate/spec", json={**spec, "resources": []}, headers=SEED_AUTH
    )
    assert resp.status == 400
    body = await resp.json()
    assert body["status"] == "FAILED" and body["message"].startswith("Command validation failure")
    assert body["data"]["validationErrors"]
    # Validating starts nothing.
    assert (await call(client, "GET", "/apis/v1/tasks"))["data"] == []
    missing = await call(client, "GET", "/apis/v1/tasks/TEST_APP/instances/V1")
    assert missing == {"status": "FAILED", "message": "No such task instance TEST_APP/V1"}
    gone = await call(client, "DELETE", "/apis/v1/tasks/TEST_APP/instances/V1")
    assert gone["status"] == "FAILED" and gone["data"] == {"deleted": False}


async def test_the_environment_drove_gives_a_task(drove):  # noqa: F811
    client = await drove(admin_token="admin")
    await call(client, "POST", OPS, json=create_op("E1", "env", env={"MINE": "1"}))
    info = (await state_of(client, "E1", {"STOPPED"}))["data"]
    assert info["env"] == {"MINE": "1"}  # TaskInfo shows only the spec's env, as Drove
    path = "/apis/v1/logfiles/tasks/TEST_APP/E1/download/output.log"
    resp = await client.get(path, headers=SEED_AUTH)
    env = dict(line.split("=", 1) for line in (await resp.text()).splitlines() if "=" in line)
    assert env["MINE"] == "1"
    assert env["DROVE_CONTAINER_ID"] == "taskd-test:latest"  # Drove sets the image here
    assert env["DROVE_TASK_ID"] == "E1" and env["DROVE_SOURCE_APP_NAME"] == "TEST_APP"
    assert env["DROVE_INSTANCE_ID"] == info["instanceId"]
    assert env["DROVE_EXECUTOR_HOST"] == info["hostname"] == env["HOST"]


async def test_a_task_that_cannot_start_ends_stopped_with_its_result(drove):  # noqa: F811
    client = await drove(admin_token="admin")
    op = create_op("F1", "")
    op["spec"]["args"] = ["/no/such/program"]
    await call(client, "POST", OPS, json=op)
    info = (await state_of(client, "F1", {"STOPPED", "RUN_FAILED", "PROVISIONING_FAILED"}))["data"]
    assert info["state"] == "STOPPED"
    assert info["taskResult"] == {"status": "FAILED", "exitCode": -1}
    assert info["errorMessage"]
