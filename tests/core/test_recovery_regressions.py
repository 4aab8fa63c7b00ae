"""Defects found by the chaos test (tests/chaos), each pinned here.

Each test rebuilds the unlucky moment the chaos test hit once in many random kills, so the
defect shows every time. Most rebuild, by rewinding the store, the state a SIGKILL leaves
behind when taskd died after a job
was started but before the store recorded its container or pid, so the attempt is still
``starting`` with neither. Recovery must still find the job (by its label, or by its
environment for a local process) and treat it like any other adopted job: a container is
removed once it ended and a kill reaches it; a local process is stopped before its task is
retried, so two attempts of one task never run at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import time

import pytest

from tests.docker.conftest import docker_ready  # noqa: F401
from tests.dockerutil import remove_labelled
from tests.processes.sundial import (
    H,
    definition,
    finished_process,
    processes,
    put,
    shell,
    sql,
    trigger,
    wait_for,
)


def docker_task(name: str, script: str) -> dict:
    return {
        "task_definition_name": name,
        "executable": {"docker_image_command": {"image": "taskd-test", "tag": "latest",
                                                "command": ["sh", "-c", script]}},
        "max_attempts": 1,
    }  # fmt: skip


def forget_the_start(db_path, *, ended: bool) -> None:
    """Rewind the store to just after the job started, before its container/pid was stored."""
    with sqlite3.connect(db_path) as db:
        db.execute(
            "UPDATE attempts SET state = 'starting', container_id = NULL, pid = NULL,"
            " pid_start = NULL, started_at = NULL, ended_at = NULL, succeeded = NULL,"
            " exit_code = NULL, reason = NULL"
        )
        if ended:  # the run ended meanwhile; when taskd died it had not
            db.execute("UPDATE tasks SET state = 'running', retry_at = NULL")
            db.execute("UPDATE runs SET state = 'running', ended_at = NULL")
            db.execute("DELETE FROM output_chunks")
    # A crash leaves no clean checkpoint behind; neither matters to what is tested here.


def containers(instance: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=taskd.instance={instance}"],
                         capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    return out.stdout.split()


async def instance_of(client) -> str:
    return (await sql(client, "SELECT value FROM meta WHERE key = 'instance'"))[0]["value"]


async def attempt_state(client) -> str | None:
    rows = await sql(client, "SELECT state FROM attempts ORDER BY id DESC LIMIT 1")
    return rows[0]["state"] if rows else None


@pytest.mark.docker
@pytest.mark.usefixtures("docker_ready")
async def test_a_container_adopted_before_its_start_was_stored_is_removed(make_client, settings):
    client = await make_client(docker_keep_containers=True)
    instance = await instance_of(client)
    try:
        await put(client, definition("p", docker_task("t", "echo hi")))
        await trigger(client, "p")
        await finished_process(client, "p")
        await client.close()
        [container] = containers(instance)  # kept, as if taskd had died before removing it
        forget_the_start(settings.db, ended=True)

        client = await make_client()
        [proc] = await finished_process(client, "p")
        assert proc["status"] == "succeeded"  # adopted: its exit code was collected
        assert [t["attempt_state"] for t in proc["task"]] == ["exited"]

        async def removed():
            return container not in await asyncio.to_thread(containers, instance)

        await wait_for(removed, within=10)
    finally:
        await client.close()
        await asyncio.to_thread(remove_labelled, f"taskd.instance={instance}")


@pytest.mark.docker
@pytest.mark.usefixtures("docker_ready")
async def test_a_kill_reaches_a_container_adopted_before_its_start_was_stored(
    make_client, settings
):
    client = await make_client()
    instance = await instance_of(client)
    try:
        await put(client, definition("p", docker_task("t", "sleep 60")))
        await trigger(client, "p")
        await wait_for(lambda: _is(client, "running"), within=30)
        await client.close()  # as on SIGTERM: the container runs on, to be adopted
        forget_the_start(settings.db, ended=False)

        client = await make_client()
        [proc] = await processes(client, "p")
        t0 = time.monotonic()
        resp = await client.post(f"/api/processes/{proc['process_id']}/kill", headers=H)
        assert resp.status == 204
        [proc] = await finished_process(client, "p", within=15)
        assert time.monotonic() - t0 < 10  # the kill reached it; it did not sleep 60 s
        assert proc["task"][0]["attempt_state"] == "killed"
        await wait_for(lambda: _no_containers(instance), within=10)
    finally:
        await client.close()
        await asyncio.to_thread(remove_labelled, f"taskd.instance={instance}")


async def _is(client, state: str) -> bool:
    return await attempt_state(client) == state


async def _no_containers(instance: str) -> bool:
    return not await asyncio.to_thread(containers, instance)


async def test_a_local_process_whose_pid_was_not_stored_is_stopped_before_the_retry(
    make_client, settings
):
    client = await make_client()
    await put(client, definition("p", shell("t", "sleep 0.5", max_attempts=2)))
    await trigger(client, "p")
    await finished_process(client, "p")
    [attempt] = await sql(client, "SELECT uuid FROM attempts")
    await client.close()
    # The job as taskd started it (its environment names the attempt), still running when
    # taskd died, before its pid was stored.
    env = {**os.environ, "TASKD_TASK_ID": attempt["uuid"], "TASKD_ATTEMPT": "1"}
    job = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & wait"], env=env,
                           start_new_session=True)  # fmt: skip
    try:
        forget_the_start(settings.db, ended=True)

        client = await make_client()
        [proc] = await finished_process(client, "p")
        assert job.wait(timeout=10) == -signal.SIGKILL  # stopped by the restart
        attempts = sorted(proc["task"], key=lambda t: t["previous_attempt_count"])
        assert [t["attempt_state"] for t in attempts] == ["lost", "exited"]
        assert "stopped" in attempts[0]["reason"]
        await client.close()
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()


async def test_a_kill_arriving_while_a_run_ends_does_not_mark_it_killed(make_client):
    """A kill (here: overlap "terminate") that came while the end of a run was being written
    set kill_requested on a run that had ended on its own: Sundial then said it was killed."""
    from taskd.http.keys import SERVICES
    from taskd.models import RUN_TERMINAL

    client = await make_client()
    engine = client.server.app[SERVICES].engine
    commit, answers = engine._commit, []

    async def kill_meanwhile(ch):
        for run_id, cols in list(ch.runs.items()):
            if cols.get("state") in RUN_TERMINAL and not answers:
                answers.append(await engine.kill_run(run_id, "too late"))
        return await commit(ch)

    engine._commit = kill_meanwhile
    await put(client, definition("p", shell("t", "true")))
    await trigger(client, "p")
    [proc] = await finished_process(client, "p")
    assert answers == [None]  # nothing left to kill
    assert proc["status"] == "succeeded" and proc["killed"] is False
    [run] = await sql(client, "SELECT state, kill_requested FROM runs")
    assert (run["state"], run["kill_requested"]) == ("succeeded", 0)
