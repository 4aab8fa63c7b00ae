"""Container tasks (Drove) against a real Docker engine: what a Drove client sees."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import time

import pytest

from taskd.engine.capacity import host_cores
from taskd.http.keys import SERVICES
from tests.conftest import ADMIN
from tests.dockerutil import remove_labelled

pytestmark = pytest.mark.docker

BASIC = {"Authorization": "Basic " + base64.b64encode(f"admin:{ADMIN}".encode()).decode()}
OPS = "/apis/v1/tasks/operations"


def containers_of(instance: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=taskd.instance={instance}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return out.stdout.split()


@pytest.fixture
async def drove(make_client, docker_ready):
    """``drove(**settings)`` starts a server; at the end its containers must be gone."""
    made = []

    async def make(**overrides):
        client = await make_client(**overrides)
        made.append((client, client.app[SERVICES].instance))
        return client

    yield make
    for client, instance in made:
        await client.close()
        await asyncio.to_thread(remove_labelled, f"taskd.instance={instance}")


def task_spec(
    task_id: str,
    script: str,
    *,
    app: str = "TEST_APP",
    cpus: int = 1,
    image: str = "taskd-test:latest",
    pull: str = "100 seconds",
    **more,
) -> dict:
    spec = {
        "sourceAppName": app,
        "taskId": task_id,
        "executable": {"type": "DOCKER", "url": image, "dockerPullTimeout": pull},
        "resources": [{"type": "CPU", "count": cpus}, {"type": "MEMORY", "sizeInMB": 64}],
        "args": ["sh", "-c", script],
    }
    spec.update(more)
    return {"type": "CREATE", "spec": spec, "opSpec": {"timeout": "5m"}}


async def create(client, task_id: str, script: str, **kw) -> None:
    resp = await client.post(OPS, json=task_spec(task_id, script, **kw), headers=BASIC)
    assert resp.status == 200, await resp.text()
    app = kw.get("app", "TEST_APP")
    assert (await resp.json())["data"] == {"taskId": f"{app}-{task_id}"}


async def info(client, task_id: str, app: str = "TEST_APP") -> dict:
    resp = await client.get(f"/apis/v1/tasks/{app}/instances/{task_id}", headers=BASIC)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["data"]


async def wait_for(client, task_id: str, states: set[str], within: float = 20.0) -> tuple:
    """Poll until the task is in one of ``states``; returns (TaskInfo, states seen in order)."""
    seen: list[str] = []
    deadline = time.monotonic() + within
    while True:
        current = await info(client, task_id)
        if not seen or seen[-1] != current["state"]:
            seen.append(current["state"])
        if current["state"] in states:
            return current, seen
        assert time.monotonic() < deadline, f"{task_id} still {current['state']} (seen {seen})"
        await asyncio.sleep(0.05)


def kill_body(task_id: str, timeout: str) -> dict:
    return {
        "type": "KILL",
        "sourceAppName": "TEST_APP",
        "taskId": task_id,
        "opSpec": {"timeout": timeout},
    }


async def read_log(client, task_id: str, name: str, offset: int, length: int = 4096) -> dict:
    url = f"/apis/v1/logfiles/tasks/TEST_APP/{task_id}/read/{name}?offset={offset}&length={length}"
    resp = await client.get(url, headers=BASIC)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def gone(instance: str, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while await asyncio.to_thread(containers_of, instance):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


ORDER = ["PENDING", "PROVISIONING", "STARTING", "RUNNING", "STOPPED"]


async def test_a_task_runs_to_success_and_its_output_is_readable(drove):
    client = await drove()
    script = "echo hello from $DROVE_SOURCE_APP_NAME/$DROVE_TASK_ID $DROVE_INSTANCE_ID; sleep 0.5"
    await create(client, "T1", script)
    final, seen = await wait_for(client, "T1", {"STOPPED"})
    assert seen == sorted(seen, key=ORDER.index) and "RUNNING" in seen, seen
    assert final["taskResult"] == {"status": "SUCCESSFUL", "exitCode": 0}
    assert final["errorMessage"] == ""
    cores = final["resources"][0]["cores"]["0"]
    assert len(cores) == 1 and cores[0] in host_cores()
    assert final["resources"][1] == {"type": "MEMORY", "memoryInMB": {"0": 64}}
    assert final["created"] <= final["updated"]

    base = "/apis/v1/logfiles/tasks/TEST_APP/T1"
    resp = await client.get(f"{base}/list", headers=BASIC)
    assert await resp.json() == {"files": ["output.log", "stderr.log", "executor.log"]}
    expected = f"hello from TEST_APP/T1 {final['instanceId']}\n"
    end = await read_log(client, "T1", "output.log", -1)
    assert end == {"data": "", "offset": len(expected)}
    # Read in small pieces, as a client tailing the file would.
    text, offset = "", 0
    while offset < end["offset"]:
        part = await read_log(client, "T1", "output.log", offset, length=7)
        assert len(part["data"]) <= 7
        text, offset = text + part["data"], part["offset"]
    assert text == expected
    assert await read_log(client, "T1", "output.log", offset) == {"data": "", "offset": offset}
    resp = await client.get(f"{base}/download/output.log", headers=BASIC)
    assert await resp.text() == expected
    assert resp.headers["Content-Disposition"] == "attachment; filename=output.log"
    assert await gone(client.app[SERVICES].instance), "the container was not removed"


async def test_a_non_zero_exit_fails_with_its_code(drove):
    client = await drove()
    await create(client, "T2", "echo oops >&2; exit 3")
    final, _ = await wait_for(client, "T2", {"STOPPED"})
    assert final["taskResult"] == {"status": "FAILED", "exitCode": 3}
    assert final["errorMessage"] == "Task instance exited with status: 3"  # as Drove says it
    assert (await read_log(client, "T2", "stderr.log", 0))["data"] == "oops\n"
    assert "3" in (await read_log(client, "T2", "executor.log", 0))["data"]


async def test_a_missing_image_fails_provisioning_and_ends_stopped(drove):
    client = await drove()
    started = time.monotonic()
    await create(client, "T3", "true", image="taskd-no-such-image:latest", pull="3 seconds")
    final, _ = await wait_for(client, "T3", {"PROVISIONING_FAILED", "RUN_FAILED", "STOPPED"})
    assert time.monotonic() - started < 3 + 2
    # Drove's state machine takes a failed provisioning on to STOPPED, with the result.
    assert final["state"] == "STOPPED"
    assert final["taskResult"] == {"status": "FAILED", "exitCode": -1}
    assert "taskd-no-such-image:latest" in final["errorMessage"]
    resp = await client.get("/apis/v1/tasks", headers=BASIC)
    assert (await resp.json())["data"] == []


async def test_kill_stops_a_running_task_within_the_timeout(drove):
    client = await drove()
    await create(client, "T4", "sleep 60")
    await wait_for(client, "T4", {"RUNNING"})
    started = time.monotonic()
    body = kill_body("T4", "15 seconds")
    body["opSpec"].update(parallelism=1, failureStrategy="STOP")
    resp = await client.post(OPS, json=body, headers=BASIC)
    assert await resp.json() == {
        "status": "SUCCESS",
        "data": {"taskId": "T4"},
        "message": "success",
    }
    assert time.monotonic() - started < 15
    final = await info(client, "T4")
    assert final["state"] == "STOPPED"
    assert final["taskResult"] == {"status": "CANCELLED", "exitCode": -1}
    assert await gone(client.app[SERVICES].instance)
    # A second kill, and a kill of a task that never existed, are refused clearly.
    for task_id in ("T4", "NOPE"):
        body["taskId"] = task_id
        resp = await client.post(OPS, json=body, headers=BASIC)
        assert resp.status == 400
        doc = await resp.json()
        assert doc["status"] == "FAILED"
        assert doc["data"]["validationErrors"] == [
            f"Either task does not exist or has already finished for TEST_APP/{task_id}"
        ]


async def test_a_kill_that_outlasts_its_timeout_says_so_and_goes_on(drove):
    client = await drove(kill_grace=3.0)
    await create(client, "T5", "sleep 60")  # sh as pid 1 ignores SIGTERM: the kill takes the grace
    await wait_for(client, "T5", {"RUNNING"})
    body = kill_body("T5", "300ms")
    resp = await client.post(OPS, json=body, headers=BASIC)
    assert resp.status == 504
    doc = await resp.json()
    assert doc["status"] == "FAILED" and "had not stopped" in doc["message"]
    final, _ = await wait_for(client, "T5", {"STOPPED"}, within=15)
    assert final["taskResult"] == {"status": "CANCELLED", "exitCode": -1}


async def test_tasks_wanting_more_cores_than_free_do_not_overlap(drove):
    n = len(host_cores())
    client = await drove(cpus=float(n))
    await create(client, "BIG1", "sleep 1", cpus=n)
    await create(client, "BIG2", "sleep 1", cpus=n)
    first, _ = await wait_for(client, "BIG1", {"RUNNING"})
    assert (await info(client, "BIG2"))["state"] == "PENDING"
    assert sorted(first["resources"][0]["cores"]["0"]) == list(host_cores())
    resp = await client.get("/apis/v1/tasks", headers=BASIC)
    assert {t["taskId"]: t["state"] for t in (await resp.json())["data"]} == {
        "BIG1": "RUNNING", "BIG2": "PENDING",
    }  # fmt: skip
    await wait_for(client, "BIG2", {"RUNNING", "STOPPED"})
    assert (await info(client, "BIG1"))["state"] == "STOPPED"
    await wait_for(client, "BIG2", {"STOPPED"})


async def test_concurrent_tasks_get_distinct_cores_pinned(drove):
    if len(host_cores()) < 2:
        pytest.skip("needs a host with two cores")
    client = await drove(cpus=2.0)
    script = "grep Cpus_allowed_list /proc/self/status; sleep 1"
    await create(client, "C1", script)
    await create(client, "C2", script)
    one, _ = await wait_for(client, "C1", {"STOPPED"})
    two, _ = await wait_for(client, "C2", {"STOPPED"})
    cores = [t["resources"][0]["cores"]["0"] for t in (one, two)]
    assert len(cores[0]) == len(cores[1]) == 1 and cores[0] != cores[1]
    for task_id, given in zip(("C1", "C2"), cores, strict=True):
        printed = (await read_log(client, task_id, "output.log", 0))["data"]
        assert printed.split()[-1] == str(given[0]), printed  # the container's own cpuset


async def test_list_shows_active_tasks_and_search_finds_by_state(drove):
    client = await drove()
    await create(client, "DONE", "true")
    await wait_for(client, "DONE", {"STOPPED"})
    await create(client, "LONG", "sleep 60")
    await wait_for(client, "LONG", {"RUNNING"})
    resp = await client.get("/apis/v1/tasks", headers=BASIC)
    assert [t["taskId"] for t in (await resp.json())["data"]] == ["LONG"]
    for states, expected in ((["RUNNING"], ["LONG"]), (["STOPPED"], ["DONE"])):
        resp = await client.post("/apis/v1/tasks/search", json={"states": states}, headers=BASIC)
        assert [t["taskId"] for t in (await resp.json())["data"]] == expected
    body = kill_body("LONG", "15s")
    assert (await client.post(OPS, json=body, headers=BASIC)).status == 200


async def test_volumes_from_the_allow_list_are_mounted(drove, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    client = await drove(allowed_volumes=(str(shared),))
    volumes = [{"pathInContainer": "/data", "pathOnHost": str(shared), "mode": "READ_WRITE"}]
    await create(client, "V1", "echo written > /data/out.txt", volumes=volumes)
    final, _ = await wait_for(client, "V1", {"STOPPED"})
    assert final["taskResult"]["status"] == "SUCCESSFUL"
    assert final["volumes"] == volumes
    assert (shared / "out.txt").read_text() == "written\n"


async def test_reading_across_output_that_was_dropped(drove):
    client = await drove(log_head_bytes=10, log_tail_bytes=10)
    await create(client, "BIG", "printf '%0100d' 0 | tr 0 x; printf END")
    await wait_for(client, "BIG", {"STOPPED"})
    whole = await read_log(client, "BIG", "output.log", 0)
    assert whole["offset"] == 103
    assert whole["data"].startswith("x" * 10) and whole["data"].endswith("x" * 7 + "END")
    assert "83 bytes of output dropped" in whole["data"]
    part = await read_log(client, "BIG", "output.log", 50, length=5)
    assert part["offset"] == 98 and part["data"].endswith("xxxxx")
    resp = await client.get(
        "/apis/v1/logfiles/tasks/TEST_APP/BIG/download/output.log", headers=BASIC
    )
    assert await resp.text() == whole["data"]
