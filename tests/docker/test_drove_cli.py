"""Drove's own command-line client (``drove-cli`` from PyPI, pinned in the test extra) driving a
real ``taskd serve`` with real containers: create, list, show, logs, download, kill.

The CLI checks every endpoint with ``GET /apis/v1/ping`` before any command, and prints
(rather than exits non-zero on) errors, so each command's output is what is checked.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.docker.test_processes_docker import instance_of
from tests.dockerutil import remove_labelled
from tests.server import TOKEN, Server

pytestmark = pytest.mark.docker


@pytest.fixture
async def server(tmp_path, docker_ready):
    srv = Server(tmp_path)
    await srv.start()
    instance = instance_of(srv)
    yield srv
    srv.stop()
    await asyncio.to_thread(remove_labelled, f"taskd.instance={instance}")


def config(srv: Server, path: Path, **auth: str) -> Path:
    """A drove-cli configuration file: the endpoint and how to authenticate."""
    lines = ["[DEFAULT]", f"endpoint = {srv.url}"] + [f"{k} = {v}" for k, v in auth.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


async def drove(conf: Path, *args: str) -> str:
    """Run one drove-cli command; its standard output."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "drove", "-f", str(conf), *args],
            capture_output=True, text=True, timeout=60, cwd=conf.parent, check=False,
        )  # fmt: skip

    done = await asyncio.to_thread(run)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def shown(conf: Path, task_id: str) -> dict[str, str]:
    """``drove tasks show`` as a mapping of its labelled lines."""
    out = await drove(conf, "tasks", "show", "TEST_APP", task_id)
    return {line[:30].strip(): line[30:].strip() for line in out.splitlines() if line.strip()}


async def until_state(conf: Path, task_id: str, state: str, within: float = 30.0) -> dict:
    deadline = time.monotonic() + within
    while (info := await shown(conf, task_id)).get("State") != state:
        assert time.monotonic() < deadline, info
        await asyncio.sleep(0.2)
    return info


def spec_file(path: Path, task_id: str, script: str) -> Path:
    spec = {
        "sourceAppName": "TEST_APP",
        "taskId": task_id,
        "executable": {
            "type": "DOCKER",
            "url": "taskd-test:latest",
            "dockerPullTimeout": "100 seconds",
        },
        "resources": [{"type": "CPU", "count": 1}, {"type": "MEMORY", "sizeInMB": 64}],
        "env": {"GREETING": "hello"},
        "args": ["sh", "-c", script],
    }
    path.write_text(json.dumps(spec))
    return path


async def test_drove_cli_main_task_commands(server, tmp_path):
    conf = config(server, tmp_path / "drove.conf", username="admin", password=TOKEN)
    assert "Cluster ping successful" in await drove(conf, "cluster", "ping")

    # create
    spec = spec_file(tmp_path / "t1.json", "T1", 'echo "$GREETING from $DROVE_TASK_ID"')
    out = await drove(conf, "tasks", "create", str(spec))
    assert "Task created" in out and "Drove assigned task ID: TEST_APP-T1" in out

    # show (until it has run), with its result as Drove prints it
    info = await until_state(conf, "T1", "STOPPED")
    assert info["Source App"] == "TEST_APP" and info["Task ID"] == "T1"
    assert info["Instance ID"].startswith("TI-")
    assert info["Result"] == "SUCCESSFUL (Task exit code: 0)"
    assert info["Executable"] == "taskd-test:latest (DOCKER)"

    # logs: the list of log files, then one downloaded
    out = await drove(conf, "tasks", "logs", "TEST_APP", "T1")
    assert "output.log" in out
    target = tmp_path / "out.log"
    out = await drove(conf, "tasks", "download", "TEST_APP", "T1", "output.log", "-o", str(target))
    assert "Downloaded size" in out
    assert target.read_text() == "hello from T1\n"

    # list, while a task runs; then kill it
    spec = spec_file(tmp_path / "t2.json", "T2", "sleep 60")
    assert "Task created" in await drove(conf, "tasks", "create", str(spec))
    await until_state(conf, "T2", "RUNNING")
    out = await drove(conf, "tasks", "list")
    rows = [line.split() for line in out.splitlines() if "TEST_APP" in line]
    assert [(r[1], r[2], r[3]) for r in rows] == [("TEST_APP", "T2", "RUNNING")]
    assert "Task kill issued" in await drove(conf, "tasks", "kill", "TEST_APP", "T2")
    info = await shown(conf, "T2")
    assert info["State"] == "STOPPED" and info["Result"] == "CANCELLED (Task exit code: -1)"
    out = await drove(conf, "tasks", "list")
    assert "T2" not in out

    # A second create of the same id: Drove's validation error, as the CLI prints it.
    out = await drove(conf, "tasks", "create", str(spec))
    assert "Validation errors:" in out and "Task already exists for TEST_APP/T2" in out

    # A task that is not there: HTTP 200 with status FAILED, whose message the CLI prints.
    out = await drove(conf, "tasks", "show", "TEST_APP", "NOPE")
    assert out == "Error making Drove call: No such task instance TEST_APP/NOPE\n"


async def test_drove_cli_tails_a_running_task(server, tmp_path):
    conf = config(server, tmp_path / "drove.conf", username="admin", password=TOKEN)
    script = "i=0; while [ $i -lt 100 ]; do echo line $i; i=$((i+1)); sleep 0.1; done"
    assert "Task created" in await drove(conf, "tasks", "create", str(spec_file(
        tmp_path / "t.json", "TAIL", script)))  # fmt: skip
    await until_state(conf, "TAIL", "RUNNING")
    # ``tasks tail`` follows output.log from its end until it is stopped.
    tail = subprocess.Popen(
        [sys.executable, "-u", "-m", "drove", "-f", str(conf), "tasks", "tail", "TEST_APP", "TAIL"],
        stdout=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        lines = []
        deadline = time.monotonic() + 20
        while len(lines) < 5 and time.monotonic() < deadline:
            lines.append(await asyncio.to_thread(tail.stdout.readline))
    finally:
        tail.kill()
        tail.wait(10)
        tail.stdout.close()
    numbers = [int(line.split()[1]) for line in lines]
    assert len(numbers) == 5 and numbers == list(range(numbers[0], numbers[0] + 5)), lines
    assert "Task kill issued" in await drove(conf, "tasks", "kill", "TEST_APP", "TAIL")


async def test_drove_cli_with_a_token_header_and_with_wrong_credentials(server, tmp_path):
    conf = config(server, tmp_path / "token.conf", auth_header=f"Bearer {TOKEN}")
    assert "Cluster ping successful" in await drove(conf, "cluster", "ping")
    assert "Id" in await drove(conf, "tasks", "list")

    # Drove's stock admin:admin: refused, and the CLI shows which option would accept it.
    conf = config(server, tmp_path / "stock.conf", username="admin", password="admin")
    out = await drove(conf, "tasks", "list")
    assert "401" in out and "--admin-token admin" in out
