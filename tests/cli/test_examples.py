"""Every example that runs on the taskd host is applied (or submitted) and run, and succeeds.

The container examples are run by tests/docker/test_examples.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import Cli
from tests.server import Server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_examples_directory_holds_the_definitions(cli: Cli, server: Server):
    out = cli.ok("apply", "-f", str(EXAMPLES), "--dry-run")
    assert "4 to create, 0 to update, 0 to delete" in out
    for name in ("hello", "nightly-backup", "fan-out-fan-in", "health-check"):
        assert f"+ create {name}" in out


def test_hello(cli: Cli, server: Server):
    cli.ok("apply", "-f", str(EXAMPLES / "hello.yaml"), "--yes")
    run = json.loads(cli.ok("trigger", "hello", "--wait", "-o", "json"))
    assert run["status"] == "succeeded"
    out = cli.ok("logs", run["task"][0]["task_id"])
    assert out == f"hello from taskd, run {run['process_id']}\n" or out.startswith(
        "hello from taskd, run "
    )


def test_fan_out_fan_in(cli: Cli, server: Server):
    cli.ok("apply", "-f", str(EXAMPLES / "fan-out-fan-in.yaml"), "--yes")
    run = json.loads(cli.ok("trigger", "fan-out-fan-in", "--wait", "-o", "json"))
    assert run["status"] == "succeeded"
    ends = {t["task_definition_name"]: (t["start_time"], t["end_time"]) for t in run["task"]}
    assert set(ends) == {"prepare", "part-a", "part-b", "part-c", "combine"}
    for part in ("part-a", "part-b", "part-c"):
        assert ends["prepare"][1] <= ends[part][0] and ends[part][1] <= ends["combine"][0]


def test_health_check(cli: Cli, server: Server):
    cli.ok("apply", "-f", str(EXAMPLES / "health-check.yaml"), "--yes")
    shown = json.loads(cli.ok("defs", "show", "health-check", "-o", "json"))
    assert shown["overlap_action"] == "terminate"
    assert "Every minute (UTC)" in cli.ok("defs")
    run = json.loads(cli.ok("trigger", "health-check", "--wait", "-o", "json"))
    assert run["status"] == "succeeded"
    assert "is up" in cli.ok("logs", run["task"][0]["task_id"])


def test_daggy_dag_with_parameters_and_a_generator(cli: Cli, server: Server):
    path = str(EXAMPLES / "dag" / "params-and-generator.yaml")
    assert cli.ok("dag", "validate", path).strip().endswith("valid")
    run = json.loads(cli.ok("dag", "submit", path, "-p", "REGION=eu,us,asia", "--wait",
                            "-o", "json"))  # fmt: skip
    assert run["dagStateChanges"][-1]["state"] == "COMPLETED"
    assert set(run["taskStates"]) == {"fetch_0", "fetch_1", "fetch_2", "plan", "check_a",
                                      "check_b", "report"}  # fmt: skip
    assert run["taskAttempts"]["fetch_2"][0]["outputLog"] == "fetching asia\n"
    table = cli.ok("dag", "submit", path, "--wait")
    assert "COMPLETED" in table and "fetch_1" in table


def test_work_queue_project_and_worker(cli: Cli, server: Server, tmp_path):
    cli.ok("queue", "project", "create", "thumbnails", "-f",
           str(EXAMPLES / "workqueue" / "project.yaml"))  # fmt: skip
    project = json.loads(cli.ok("queue", "project", "list", "-o", "json"))[0]
    worker = json.loads(cli.ok("queue", "worker", "create", "--alias", "laptop", "-o", "json"))
    env = {**os.environ, "TASKD_URL": server.url, "WORKER_ID": str(worker["id"]),
           "WORKER_SECRET": worker["secret"], "PROJECT": str(project["id"])}  # fmt: skip
    script = [sys.executable, str(EXAMPLES / "workqueue" / "worker.py")]
    subprocess.run([*script, "--request-access"], env=env, check=True, capture_output=True)
    pending = json.loads(cli.ok("queue", "access", "list", "thumbnails", "-o", "json"))
    assert len(pending) == 1
    cli.ok("queue", "access", "accept", "thumbnails", str(worker["id"]))
    for recipe in ("a.png", "b.png", "notes.txt"):  # the worker fails what is not a .png
        status, body = _submit(server, worker, project["id"], recipe)
        assert status == 200 and body["ok"], body
    done = subprocess.run(script, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "A.PNG" in done.stdout and "B.PNG" in done.stdout
    shown = json.loads(cli.ok("queue", "project", "show", "thumbnails", "-o", "json"))
    assert shown["name"] == "thumbnails"
    counts = shown["counts"]
    assert counts.get("closed_task_count") == 2 and counts.get("failed_task_count") == 1, counts
    assert "(1 tasks)" in cli.ok("queue", "project", "reset-failed", "thumbnails")
    cli.ok("queue", "project", "pause", "thumbnails")
    assert json.loads(cli.ok("queue", "project", "list", "-o", "json"))[0]["paused"] is True
    cli.ok("queue", "worker", "pause", str(worker["id"]))
    workers = json.loads(cli.ok("queue", "worker", "list", "-o", "json"))
    assert len(workers) == 1
    assert "not found" in cli.fails("queue", "project", "show", "nope")
    cli.ok("queue", "access", "reject", "thumbnails", str(worker["id"]))  # revokes the grant
    assert json.loads(cli.ok("queue", "access", "list", "thumbnails", "-o", "json")) == []


def _submit(server: Server, worker: dict, project: int, recipe: str):
    import asyncio

    import aiohttp

    async def go():
        headers = {"X-Worker-ID": str(worker["id"]), "X-Secret": worker["secret"]}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.post(f"{server.url}/task/submit", json={
                    "project": project, "recipe": recipe, "max_retries": 0,
                    "unique_string": recipe}) as resp:  # fmt: skip
                return resp.status, await resp.json()

    return asyncio.run(go())
