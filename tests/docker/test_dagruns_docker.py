"""DAG runs whose jobs name an image: they run as containers, and a kill reaches them."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from taskd.http.keys import SERVICES
from tests.dagruns.test_dagruns import Api, job
from tests.dockerutil import remove_labelled

pytestmark = pytest.mark.docker


@pytest.fixture
async def api(make_client, admin_headers, test_image):
    client = await make_client()
    instance = client.app[SERVICES].instance
    yield Api(client, admin_headers)
    await asyncio.to_thread(remove_labelled, f"taskd.instance={instance}")


def running_containers(instance: str) -> list[str]:
    return subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=taskd.instance={instance}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()


async def test_image_job_runs_in_a_container(api, test_image):
    dag = {
        "parameters": {"WHO": ["one", "two"]},
        "tasks": {
            "hello": {
                "job": job("sh", "-c", "echo hello $WHO; echo oops >&2", image=test_image,
                           environment=["WHO={{WHO}}"], cores="0.5", memoryMB="64"),
            },
            "after": {"job": job("/bin/echo", "local"), "parents": ["hello"]},
        },
    }  # fmt: skip
    run = await api.finished(await api.submit(dag), within=60)
    assert run["taskStates"] == {"hello_0": "COMPLETED", "hello_1": "COMPLETED",
                                 "after": "COMPLETED"}  # fmt: skip
    (attempt,) = run["taskAttempts"]["hello_1"]
    assert attempt["rc"] == 0
    assert attempt["outputLog"] == "hello two\n" and attempt["errorLog"] == "oops\n"
    assert run["tasks"]["hello_0"]["job"]["image"] == test_image


async def test_delete_kills_the_container(api, test_image):
    instance = api.client.app[SERVICES].instance
    dag = {
        "tasks": {
            "sleeper": {"job": job("sleep", "60", image=test_image)},
            "local": {"job": job("/bin/sleep", "60")},
        }
    }
    run_id = await api.submit(dag)
    await api.until_task(run_id, "sleeper", "RUNNING")
    for _ in range(200):  # the container exists a little after the task is RUNNING
        if running_containers(instance):
            break
        await asyncio.sleep(0.05)
    assert len(running_containers(instance)) == 1
    assert await api.call("DELETE", f"/v1/dagrun/{run_id}") is None
    assert running_containers(instance) == []
    run = await api.run(run_id)
    assert run["taskStates"] == {"sleeper": "KILLED", "local": "KILLED"}
