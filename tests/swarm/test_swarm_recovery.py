"""A taskd killed while its swarm services run takes them over again after its restart."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess

import pytest

from tests.docker.test_processes_docker import docker_task, one_process, put_and_trigger
from tests.processes.sundial import wait_for
from tests.swarm.conftest import instance_of, services
from tests.swarm.test_swarm_processes import logs, no_services

pytestmark = pytest.mark.swarm


def attempt_states(db) -> list[tuple[str, int, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT t.name, a.number, a.state FROM attempts a JOIN tasks t ON t.id = a.task_id"
            " ORDER BY t.name, a.number"
        ).fetchall()


async def test_sigkill_while_swarm_jobs_run_then_restart(swarm_server, swarm_ready):
    srv = swarm_server
    script = (
        "for i in $(seq 1 {n}); do echo {name} line $i; sleep 1; done; echo bye >&2; exit {code}"
    )
    names = {"a": (8, 0), "b": (10, 0), "c": (9, 4)}
    doc = {"process_definition_name": "survive", "task_definitions": [
        docker_task(name, script.format(n=n, name=name, code=code), swarm_ready)
        for name, (n, code) in names.items()
    ]}  # fmt: skip
    await put_and_trigger(srv, doc)
    instance = instance_of(srv)
    proc = await one_process(srv, "survive", finished=False, within=30)

    async def all_printing():
        _, found = await srv.request("GET", "/api/processes/",
                                     params={"process_definition_name": "survive"})  # fmt: skip
        tasks = found[0]["task"]
        if len(tasks) < 3 or not all(t.get("task_id") for t in tasks):
            return False
        outs = [await logs(srv, t["task_id"], "stdout") for t in tasks]
        return all("line 2" in out for out in outs)

    await wait_for(all_printing, within=60)
    srv.kill9()
    running = await asyncio.to_thread(services, instance)
    assert len(running) == 3  # they outlived taskd
    # A service of this instance that the store does not know: removed at the restart.
    stray = subprocess.run(
        ["docker", "service", "create", "-d", "-q", "--replicas", "1",
         "--restart-condition", "none", "--no-resolve-image",
         "--label", f"taskd.instance={instance}", "--label", "taskd.attempt=unknown",
         swarm_ready, "sleep", "300"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    await asyncio.sleep(2)  # output printed while taskd was away must not be lost
    await srv.start()
    assert stray not in await asyncio.to_thread(services, instance)

    proc = await one_process(srv, "survive", within=60)
    tasks = {t["task_definition_name"]: t for t in proc["task"]}
    assert sorted(tasks) == ["a", "b", "c"]
    for name, (n, code) in names.items():
        assert tasks[name]["exit_code"] == code
        out = await logs(srv, tasks[name]["task_id"], "stdout")
        assert out == "".join(f"{name} line {i}\n" for i in range(1, n + 1))
        assert await logs(srv, tasks[name]["task_id"], "stderr") == "bye\n"
    # Each finished with its one attempt: watched again, not started twice.
    assert attempt_states(srv.db) == [("a", 1, "exited"), ("b", 1, "exited"), ("c", 1, "exited")]
    await no_services(instance)
    assert proc["process_id"]


async def test_a_job_swarm_moves_is_a_new_attempt_and_the_old_one_is_fenced(
    swarm_server, swarm_ready
):
    srv = swarm_server
    doc = {"process_definition_name": "moved", "task_definitions": [
        docker_task("mover", "echo attempt $TASKD_ATTEMPT; sleep 4; echo done", swarm_ready),
    ]}  # fmt: skip
    await put_and_trigger(srv, doc)
    instance = instance_of(srv)

    async def one_service():
        found = await asyncio.to_thread(services, instance)
        return found[0] if len(found) == 1 else None

    first = await wait_for(one_service, within=30)
    await asyncio.sleep(1)
    # Swarm replaces the service's task with a new one, as it does when a node goes away.
    subprocess.run(["docker", "service", "update", "--force", "--detach", first],
                   capture_output=True, timeout=60, check=True)  # fmt: skip
    proc = await one_process(srv, "moved", within=60)
    assert proc["status"] == "succeeded"
    assert attempt_states(srv.db) == [("mover", 1, "lost"), ("mover", 2, "exited")]
    last = max(proc["task"], key=lambda t: t["start_time"])
    assert await logs(srv, last["task_id"], "stdout") == "attempt 2\ndone\n"
    assert first not in await asyncio.to_thread(services, instance)
    await no_services(instance)
