"""Process definitions with Docker tasks against a real taskd process and a real engine."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time

import pytest

from tests.dockerutil import remove_labelled
from tests.processes.sundial import wait_for
from tests.server import Server

pytestmark = pytest.mark.docker


def docker_task(name: str, script: str, image: str, *, deps=(), **extra) -> dict:
    repo, _, tag = image.partition(":")
    return {
        "task_definition_name": name,
        "dependencies": [{"task_definition_name": d, "success_required": True} for d in deps],
        "executable": {"docker_image_command": {"image": repo, "tag": tag or "latest",
                                                "command": ["sh", "-c", script],
                                                "memory": extra.pop("memory", 64),
                                                "cpu": extra.pop("cpu", 0.5)}},
        "max_attempts": extra.pop("max_attempts", 1),
        "backoff_base_seconds": 0,
        **extra,
    }  # fmt: skip


def instance_of(srv: Server) -> str:
    with sqlite3.connect(srv.db) as db:
        return db.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()[0]


def containers(instance: str, all_states: bool = True) -> list[str]:
    args = ["docker", "ps", "-q", "--filter", f"label=taskd.instance={instance}"]
    if all_states:
        args.insert(2, "-a")
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.split()


@pytest.fixture
async def server(tmp_path, docker_ready):
    srv = Server(tmp_path, "--docker-network", "host")
    await srv.start()
    instance = instance_of(srv)
    yield srv
    srv.stop()
    remove_labelled(f"taskd.instance={instance}")


async def put_and_trigger(srv: Server, doc: dict) -> None:
    name = doc["process_definition_name"]
    status, body = await srv.request("PUT", f"/api/process_definitions/{name}", json=doc)
    assert status == 200, body
    status, body = await srv.request(
        "POST", f"/api/process_definitions/{doc['process_definition_name']}/trigger"
    )
    assert status == 204, body


async def one_process(srv: Server, name: str, *, finished: bool = True, within: float = 30):
    async def check():
        status, found = await srv.request("GET", "/api/processes/",
                                          params={"process_definition_name": name})  # fmt: skip
        assert status == 200, found
        if found and (not finished or found[0]["status"] != "running"):
            return found[0]
        return None

    return await wait_for(check, within=within)


async def test_docker_task_then_dependent_shell_task(server, test_image):
    doc = {
        "process_definition_name": "mixed",
        "task_definitions": [
            docker_task("extract", "echo rows=42; echo warn >&2; exit 0", test_image),
            {"task_definition_name": "load", "dependencies": [
                {"task_definition_name": "extract", "success_required": True}],
             "executable": {"shell_script_command": {"script": "echo loaded"}},
             "max_attempts": 1, "backoff_base_seconds": 0},
        ],
    }  # fmt: skip
    await put_and_trigger(server, doc)
    proc = await one_process(server, "mixed")
    assert proc["status"] == "succeeded"
    tasks = {t["task_definition_name"]: t for t in proc["task"]}
    assert tasks["extract"]["exit_code"] == 0 and tasks["load"]["exit_code"] == 0
    _, out = await server.request("GET", f"/api/tasks/{tasks['extract']['task_id']}/logs",
                                  params={"stream": "stdout"})  # fmt: skip
    _, err = await server.request("GET", f"/api/tasks/{tasks['extract']['task_id']}/logs",
                                  params={"stream": "stderr"})  # fmt: skip
    _, loaded = await server.request("GET", f"/api/tasks/{tasks['load']['task_id']}/logs",
                                     params={"stream": "stdout"})  # fmt: skip
    assert (out, err, loaded) == ("rows=42\n", "warn\n", "loaded\n")
    await no_containers(instance_of(server))  # removed once output and exit code were kept


async def test_failing_container_task_exit_code_and_retries(server, test_image):
    doc = {"process_definition_name": "fails", "task_definitions": [
        docker_task("boom", "echo trying; exit 7", test_image, max_attempts=2),
        docker_task("after", "echo never", test_image, deps=["boom"]),
    ]}  # fmt: skip
    await put_and_trigger(server, doc)
    proc = await one_process(server, "fails")
    assert proc["status"] == "failed"
    assert [t["exit_code"] for t in proc["task"]] == [7, 7]
    assert {t["task_definition_name"] for t in proc["task"]} == {"boom"}
    await no_containers(instance_of(server))


async def test_kill_stops_the_container_within_seconds(server, test_image):
    doc = {"process_definition_name": "long", "task_definitions": [
        docker_task("sleeper", "trap 'echo got TERM; exit 143' TERM; sleep 60 & wait", test_image),
    ]}  # fmt: skip
    await put_and_trigger(server, doc)
    instance = instance_of(server)
    await wait_for(lambda: _running_containers(instance), within=20)
    proc = await one_process(server, "long", finished=False)
    t0 = time.monotonic()
    status, _ = await server.request("POST", f"/api/processes/{proc['process_id']}/kill")
    assert status == 204
    proc = await one_process(server, "long", within=15)
    assert time.monotonic() - t0 < 6
    assert proc["status"] == "failed" and proc["task"][0]["attempt_state"] == "killed"
    await no_containers(instance)


async def no_containers(instance: str) -> None:
    """Containers go right after their outcome is stored; allow that a moment."""

    async def gone():
        return not await asyncio.to_thread(containers, instance)

    await wait_for(gone, within=10)


async def _running_containers(instance):
    return await asyncio.to_thread(containers, instance, False)


async def test_max_runtime_kills_an_overrunning_container(server, test_image):
    doc = {"process_definition_name": "slow", "task_definitions": [
        docker_task("slow", "sleep 60", test_image, max_runtime_seconds=1),
    ]}  # fmt: skip
    await put_and_trigger(server, doc)
    proc = await one_process(server, "slow", within=20)
    [task] = proc["task"]
    assert task["attempt_state"] == "timed_out" and task["status"] == "failed"
    await no_containers(instance_of(server))


async def test_out_of_memory_is_recorded(server, test_image):
    doc = {"process_definition_name": "oom", "task_definitions": [
        docker_task("hog", "x=$(head -c 60000000 /dev/zero | tr '\\0' a); echo done", test_image,
                    memory=8),
    ]}  # fmt: skip
    await put_and_trigger(server, doc)
    proc = await one_process(server, "oom")
    [task] = proc["task"]
    assert task["status"] == "failed"
    assert "out of memory" in task["reason"]


async def test_container_reports_through_its_own_callbacks(server, test_image):
    # busybox wget posts JSON with the task's own token to TASKD_URL (host network).
    script = r"""
    auth="Authorization: Bearer $TASKD_TASK_TOKEN"
    base="$TASKD_URL/api/tasks/$TASKD_TASK_ID"
    wget -q -O- --header "$auth" --header 'Content-Type: application/json' \
      --post-data '[{"log_entry_id":"2b7d0f7e-7a4c-4b1e-9d59-3c1a2b3c4d5e","when":"2026-01-01T00:00:00.000Z","source":"job","message":"halfway"}]' \
      "$base/log_entries" && echo log-ok
    wget -q -O- --header "$auth" --header 'Content-Type: application/json' \
      --post-data '[{"metadata_entry_id":"9a7d0f7e-7a4c-4b1e-9d59-3c1a2b3c4d5e","when":"2026-01-01T00:00:00.000Z","key":"rows","value":"42"}]' \
      "$base/metadata" && echo meta-ok
    wget -q -O- --header "$auth" --post-data '' "$base/succeed" && echo succeed-ok
    wget -q -O- --header "$auth" "$TASKD_URL/api/process_definitions/" && echo read-ok
    wget -q -O- --header "$auth" --post-data '' "$TASKD_URL/api/process_definitions/explicit/trigger" && echo trigger-ok
    exit 0
    """
    doc = {"process_definition_name": "explicit", "task_definitions": [
        docker_task("reporter", script, test_image, require_explicit_success=True),
    ]}  # fmt: skip
    await put_and_trigger(server, doc)
    proc = await one_process(server, "explicit")
    [task] = proc["task"]
    assert task["status"] == "succeeded", task  # exit 0 and an explicit success report
    assert [e["message"] for e in task["log_entries"]] == ["halfway"]
    assert [(m["key"], m["value"]) for m in task["metadata_entries"]] == [("rows", "42")]
    _, out = await server.request("GET", f"/api/tasks/{task['task_id']}/logs",
                                  params={"stream": "stdout"})  # fmt: skip
    assert out.split() == ["log-ok", "meta-ok", "succeed-ok"]  # read and trigger were refused
    _, found = await server.request("GET", "/api/processes/",
                                    params={"process_definition_name": "explicit"})  # fmt: skip
    assert len(found) == 1


async def test_sigkill_while_a_container_runs_then_restart_adopts_it(server, test_image):
    script = "for i in $(seq 1 40); do echo line-$i; sleep 0.1; done; echo done >&2"
    doc = {"process_definition_name": "adopt", "task_definitions": [
        docker_task("counter", script, test_image, max_attempts=3),
    ]}  # fmt: skip
    await put_and_trigger(server, doc)
    instance = instance_of(server)
    await wait_for(lambda: _running_containers(instance), within=20)
    await asyncio.sleep(1.0)  # some output is stored, some is not yet printed
    server.kill9()
    assert await _running_containers(instance)  # the container outlived taskd
    await server.start()
    proc = await one_process(server, "adopt", within=30)
    assert proc["status"] == "succeeded"
    [task] = proc["task"]  # one attempt: adopted, not retried
    assert task["previous_attempt_count"] == 0 and task["exit_code"] == 0
    _, out = await server.request("GET", f"/api/tasks/{task['task_id']}/logs",
                                  params={"stream": "stdout"})  # fmt: skip
    assert out == "".join(f"line-{i}\n" for i in range(1, 41))  # whole, nothing twice
    _, err = await server.request("GET", f"/api/tasks/{task['task_id']}/logs",
                                  params={"stream": "stderr"})  # fmt: skip
    assert err == "done\n"
    await no_containers(instance)


async def test_sigterm_leaves_containers_running_for_the_next_start(server, test_image):
    doc = {"process_definition_name": "term", "task_definitions": [
        docker_task("steady", "sleep 3; echo finished", test_image),
    ]}  # fmt: skip
    await put_and_trigger(server, doc)
    instance = instance_of(server)
    await wait_for(lambda: _running_containers(instance), within=20)
    took = server.terminate()
    assert took < 6
    assert await _running_containers(instance)
    await server.start()
    proc = await one_process(server, "term", within=20)
    assert proc["status"] == "succeeded" and len(proc["task"]) == 1


async def test_orphaned_containers_of_this_instance_are_removed_at_start(server, test_image):
    instance = instance_of(server)
    server.kill9()
    orphan = subprocess.run(
        ["docker", "run", "-d", "--network", "none", "--label", f"taskd.instance={instance}",
         "--label", "taskd.attempt=00000000-0000-0000-0000-000000000000", test_image,
         "sleep", "60"], capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    stranger = subprocess.run(
        ["docker", "run", "-d", "--network", "none", test_image, "sleep", "60"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        await server.start()
        assert orphan[:12] not in containers(instance)
        ids = subprocess.run(["docker", "ps", "-q"], capture_output=True, text=True).stdout
        assert stranger[:12] in ids  # never touch what taskd did not label
    finally:
        subprocess.run(["docker", "rm", "-f", stranger, orphan], capture_output=True)
