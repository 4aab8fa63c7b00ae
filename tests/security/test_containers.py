"""What containers may do (SPEC §5): no API family can ask for a privileged container, a host
namespace, a device or a mount outside ``--allow-volume``. Checked on the container
configuration each family's parser leads to, and on real containers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import types

import pytest

from taskd.config import Settings
from taskd.containertasks.spec import parse_create
from taskd.dagruns import spec as dagspec
from taskd.errors import BadRequest
from taskd.http.keys import SERVICES
from taskd.models import JobSpec
from taskd.processes import definitions as defs
from taskd.runners.base import AttemptContext
from taskd.runners.containerspec import container_config
from taskd.runners.docker import DockerRunner
from taskd.validate import Doc, Problems
from tests.conftest import ADMIN
from tests.dockerutil import remove_labelled
from tests.processes.sundial import H, definition, finished_process, put, sql, trigger, wait_for

BASIC = {"Authorization": "Basic " + base64.b64encode(f"admin:{ADMIN}".encode()).decode()}

HOSTILE = {
    "privileged": True, "Privileged": True, "HostConfig": {"Privileged": True, "PidMode": "host"},
    "network_mode": "host", "NetworkMode": "host", "pid_mode": "host", "cap_add": ["ALL"],
    "devices": ["/dev/sda"], "volumes": ["/:/host"], "binds": ["/:/host"], "user": "root",
}  # fmt: skip
ALLOWED_HOST_CONFIG = {"NetworkMode", "CpusetCpus", "NanoCpus", "Memory", "MemorySwap", "Binds"}


def host_config(job: JobSpec, network: str = "none") -> dict:
    runner = DockerRunner(Settings(docker_network=network), "security")
    ctx = AttemptContext(attempt_uuid="a", run_id=1, task_id=1, task_name="t", number=1,
                         job=job, env={"TASKD_TASK_TOKEN": "x"})  # fmt: skip
    config = container_config(ctx, runner.instance, network)
    assert set(config) <= {"Image", "Env", "Labels", "HostConfig", "Cmd", "WorkingDir"}
    return config["HostConfig"]


def drove_create(volumes=(), **spec) -> dict:
    body = {
        "sourceAppName": "APP", "taskId": "t1",
        "executable": {"type": "DOCKER", "url": "taskd-test:latest", "dockerPullTimeout": "1m"},
        "resources": [{"type": "CPU", "count": 1}, {"type": "MEMORY", "sizeInMB": 64}],
        "volumes": list(volumes), **spec,
    }  # fmt: skip
    return {"type": "CREATE", "spec": body, "opSpec": {"timeout": "1m"}}


def parse_drove(body: dict, allowed: tuple[str, ...]) -> JobSpec:
    svc = types.SimpleNamespace(
        settings=Settings(allowed_volumes=allowed), instance="security",
        engine=types.SimpleNamespace(refusal=lambda templates: []),
    )  # fmt: skip
    plan, _, _ = parse_create(Doc(body, "", Problems()), svc)
    return plan.tasks[0].job


def test_sundial_docker_tasks_cannot_smuggle_host_settings():
    exe = {"image": "taskd-test", "tag": "latest", "command": ["true"], **HOSTILE}
    task = {"task_definition_name": "t", "executable": {"docker_image_command": exe}}
    doc = defs.parse_definition(definition("p", task), "p")
    stored = doc["task_definitions"][0]["executable"]["docker_image_command"]
    assert not set(stored) & set(HOSTILE)  # unknown fields are dropped, never stored
    [template] = defs.templates(doc)
    assert template.job.volumes == ()
    assert host_config(template.job) == {"NetworkMode": "none"}


def test_daggy_jobs_cannot_smuggle_host_settings():
    for key, value in HOSTILE.items():
        job = {"command": ["true"], "image": "taskd-test:latest", key: value}
        with pytest.raises(BadRequest) as caught:
            dagspec.parse_spec({"tasks": {"t": {"job": job}}})
        assert any(f"job.{key} is not a known field" in d for d in caught.value.details)
    spec = dagspec.parse_spec({"tasks": {"t": {"job": {"command": ["true"], "image": "x"}}}})
    assert host_config(spec.tasks[0].job) == {"NetworkMode": "none"}


def test_drove_tasks_get_no_devices_no_host_settings_and_only_allowed_volumes(tmp_path):
    allowed = tmp_path / "allowed"
    (allowed / "data").mkdir(parents=True)
    (allowed / "escape").symlink_to("/etc")
    outside = [
        "/", "/etc", "/var/run/docker.sock", str(tmp_path), f"{allowed}/../outside",
        f"{allowed}/escape", f"{allowed}x", f"{allowed}/data:/etc",
    ]  # fmt: skip
    for path in outside:
        volume = {"pathInContainer": "/mnt", "pathOnHost": path, "mode": "READ_ONLY"}
        with pytest.raises(BadRequest):
            parse_drove(drove_create([volume]), (str(allowed),))
    with pytest.raises(BadRequest):  # nothing at all without an allow-list
        parse_drove(drove_create([{"pathInContainer": "/mnt", "pathOnHost": str(allowed),
                                   "mode": "READ_ONLY"}]), ())  # fmt: skip
    for key, value in HOSTILE.items():
        with pytest.raises(BadRequest):
            parse_drove(drove_create(**{key: value}), ())
    with pytest.raises(BadRequest):
        parse_drove(drove_create(devices=[{"type": "DIRECT", "pathOnHost": "/dev/sda"}]), ())
    volume = {"pathInContainer": "/mnt", "pathOnHost": f"{allowed}/data", "mode": "READ_ONLY"}
    job = parse_drove(drove_create([volume]), (str(allowed),))
    config = host_config(job)
    assert set(config) <= ALLOWED_HOST_CONFIG
    assert config["Binds"] == [f"{allowed}/data:/mnt:ro"]
    assert config["NetworkMode"] == "none"


def test_host_networking_only_when_the_operator_configures_it():
    job = JobSpec(runner="docker", image="x", cpus=1, memory_mb=64)
    assert host_config(job, "none")["NetworkMode"] == "none"
    assert host_config(job, "host")["NetworkMode"] == "host"  # --docker-network host, by choice
    assert set(host_config(job)) <= ALLOWED_HOST_CONFIG


@pytest.mark.docker
async def test_real_containers_of_every_family_are_unprivileged(make_client, docker_ready,
                                                                tmp_path):  # fmt: skip
    allowed = tmp_path / "data"
    allowed.mkdir()
    client = await make_client(docker_keep_containers=True, allowed_volumes=(str(allowed),))
    instance = client.server.app[SERVICES].instance
    try:
        exe = {"image": "taskd-test", "tag": "latest", "command": ["true"], **HOSTILE}
        await put(client, definition("p", {"task_definition_name": "t",
                                           "executable": {"docker_image_command": exe}}))  # fmt: skip
        await trigger(client, "p")
        dag = {"tasks": {"t": {"job": {"command": ["true"], "image": docker_ready}}}}
        resp = await client.post("/v1/dagrun", json=dag, headers=H)
        assert resp.status == 200, await resp.text()
        volume = {"pathInContainer": "/mnt", "pathOnHost": str(allowed), "mode": "READ_ONLY"}
        resp = await client.post("/apis/v1/tasks/operations", headers=BASIC,
                                 json=drove_create([volume], args=["true"]))  # fmt: skip
        assert resp.status == 200, await resp.text()
        await finished_process(client, "p")

        async def three():
            ids = await asyncio.to_thread(labelled, instance)
            done = await sql(client, "SELECT COUNT(*) AS n FROM runs WHERE ended_at IS NOT NULL")
            return ids if len(ids) == 3 and done[0]["n"] == 3 else None

        ids = await wait_for(three, within=60)
        inspected = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True,
                                              text=True, check=True).stdout)  # fmt: skip
        for info in inspected:
            host = info["HostConfig"]
            assert host["Privileged"] is False
            assert host["NetworkMode"] == "none"
            assert host["PidMode"] in ("", "private")
            assert host["IpcMode"] != "host" and host["UTSMode"] != "host"
            assert not host.get("CapAdd") and not host.get("Devices")
            assert not host.get("SecurityOpt") and host.get("UsernsMode") in ("", None)
            assert host.get("Binds") in (None, [], [f"{allowed}:/mnt:ro"])
    finally:
        await client.close()
        await asyncio.to_thread(remove_labelled, f"taskd.instance={instance}")


def labelled(instance: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=taskd.instance={instance}"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout.split()
