"""Daggy compatibility: every example of Daggy's endpoint document, replayed against a real
``taskd serve`` and checked field by field (shape, status code, semantics).

Daggy has no client on the package registries, and its own command-line client's source is
not published where it can be read, so the requests here are the ones its documentation
shows, sent as a plain HTTP client sends them: without credentials, since Daggy has no
authentication. taskd refuses anonymous callers unless started with ``--daggy-anonymous``,
which these replays use; without it the refusal names that option.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import aiohttp
import orjson
import pytest
from click.testing import CliRunner

from taskd.cli import main
from taskd.store import Store
from tests.server import Server

# The examples, as the document shows them.
EXAMPLE_DAG = {
    "tag": "mediumtest",
    "parameters": {"JOBNO": ["1", "2"]},
    "tasks": {
        "simple": {
            "job": {
                "command": ["/usr/bin/python3", "script.py", "{{JOBNO}}"],
                "cores": "1",
                "memoryMB": "100",
            }
        }
    },
}


def example_task(arg: str) -> dict[str, Any]:
    return {
        "maxRetries": 0,
        "retryIntervalSeconds": 0,
        "job": {
            "environment": [],
            "memoryMB": "100",
            "cores": "1",
            "command": ["/usr/bin/python3", "script.py", arg],
        },
        "children": [],
        "parents": [],
        "isGenerator": False,
    }


EXAMPLE_RUN = {
    "runID": 0,
    "tag": "mediumtest",
    "tasks": {"simple_0": example_task("1"), "simple_1": example_task("2")},
    "taskStates": {"simple_0": "COMPLETED", "simple_1": "COMPLETED"},
    "taskAttempts": {
        name: [
            {
                "startTime": "1645112246001010638",
                "stopTime": "1645112256116473300",
                "rc": 0,
                "outputLog": f"Echoing script.py {arg} env is not found, value is >><< \n",
                "errorLog": "",
                "executorLog": "",
            }
        ]
        for name, arg in (("simple_0", "1"), ("simple_1", "2"))
    },
    "dagStateChanges": [
        {"time": "1645112245996647771", "state": "QUEUED"},
        {"time": "1645112245997607895", "state": "RUNNING"},
        {"time": "1645112265427198113", "state": "COMPLETED"},
    ],
}
EXAMPLE_LIST_ITEM = {
    "runID": 0,
    "tag": "mediumtest",
    "state": "COMPLETED",
    "startTime": "1645112245996647771",
    "lastUpdate": "1645112265427198113",
    "taskCounts": {"COMPLETED": 25},
}
# The script the example runs: what its output in the document says it prints.
SCRIPT = """\
import os, sys
value = os.environ.get("DAGGY_TEST")
print(f"Echoing script.py {sys.argv[1]} env is {'found' if value else 'not found'},"
      f" value is >>{value or ''}<< ")
"""
TIMES = ("startTime", "stopTime", "lastUpdate", "time")


def same_shape(expected: Any, actual: Any, where: str = "") -> None:
    """``actual`` has exactly the fields of ``expected``, each of the same JSON type; times
    are nanosecond strings like the example's."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), (where, actual)
        assert set(actual) == set(expected), (where, sorted(actual), sorted(expected))
        for key, value in expected.items():
            if key in TIMES:
                assert isinstance(actual[key], str) and actual[key].isdigit(), (where, key)
                assert len(actual[key]) == len(value), (where, key, actual[key])
            else:
                same_shape(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), (where, actual)
        # Item by item where the lengths agree (lists of different things, like Drove's
        # resources); otherwise every item is shaped like the example's first.
        pairs = (
            zip(expected, actual, strict=True)
            if len(expected) == len(actual)
            else ((expected[0], item) for item in actual if expected)
        )
        for want, item in pairs:
            same_shape(want, item, f"{where}[]")
    else:
        assert type(actual) is type(expected), (where, actual, expected)


class Daggy:
    """Requests as Daggy's documentation sends them: no credentials."""

    def __init__(self, server: Server) -> None:
        self.server = server

    async def send(self, method: str, path: str, body: Any = None) -> tuple[int, Any, str]:
        """(status, JSON body or None when there is none, content type)."""
        data = None if body is None else orjson.dumps(body)
        async with aiohttp.ClientSession() as session:
            async with session.request(method, self.server.url + path, data=data) as resp:
                raw = await resp.read()
                return resp.status, orjson.loads(raw) if raw else None, resp.content_type

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, reply, _ = await self.send(method, path, body)
        assert status == 200, (method, path, status, reply)
        return reply

    async def finished(self, run_id: int, within: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            state = (await self.ok("GET", f"/v1/dagrun/{run_id}/state"))["state"]
            if state not in ("QUEUED", "RUNNING"):
                return await self.ok("GET", f"/v1/dagrun/{run_id}")
            assert time.monotonic() < deadline, f"run {run_id} still {state}"
            await asyncio.sleep(0.05)


@pytest.fixture
async def daggy(tmp_path):
    (tmp_path / "script.py").write_text(SCRIPT)  # tasks run in the server's directory
    # The example's script lies in the test's private directory, which only root may enter.
    server = Server(tmp_path, "--daggy-anonymous", "--local-user", "root")
    await server.start()
    yield Daggy(server)
    server.stop()


async def test_every_example_of_the_endpoint_document(daggy):
    # Another family's run first: Daggy's runIDs still start at 0 and count DAG runs only.
    drove = {
        "type": "CREATE",
        "opSpec": {"timeout": "5m"},
        "spec": {
            "sourceAppName": "OTHER",
            "taskId": "T1",
            "executable": {"type": "DOCKER", "url": "taskd-no-such-image:latest",
                           "dockerPullTimeout": "1 second"},
            "resources": [{"type": "CPU", "count": 1}, {"type": "MEMORY", "sizeInMB": 64}],
        },
    }  # fmt: skip
    status, _ = await daggy.server.request("POST", "/apis/v1/tasks/operations", json=drove)
    assert status == 200

    status, reply, ctype = await daggy.send("GET", "/ready")
    assert (status, reply, ctype) == (200, {"msg": "Ya like DAGs?"}, "application/json")

    assert await daggy.ok("POST", "/v1/dagrun/validate", EXAMPLE_DAG) == {"valid": True}
    ids = [(await daggy.ok("POST", "/v1/dagrun", EXAMPLE_DAG))["runID"] for _ in range(3)]
    assert ids == [0, 1, 2]  # {"runID": 0} for the first, as in the document

    run = await daggy.finished(0)
    same_shape(EXAMPLE_RUN, run)
    # Everything but the times is the example's, value for value.
    assert run["runID"] == 0 and run["tag"] == "mediumtest"
    assert run["tasks"] == EXAMPLE_RUN["tasks"]
    assert run["taskStates"] == EXAMPLE_RUN["taskStates"]
    for name, attempts in EXAMPLE_RUN["taskAttempts"].items():
        (got,) = run["taskAttempts"][name]
        assert {k: got[k] for k in ("rc", "outputLog", "errorLog", "executorLog")} == {
            k: attempts[0][k] for k in ("rc", "outputLog", "errorLog", "executorLog")
        }
        assert int(got["startTime"]) <= int(got["stopTime"])
    changes = run["dagStateChanges"]
    assert [c["state"] for c in changes] == ["QUEUED", "RUNNING", "COMPLETED"]
    assert [int(c["time"]) for c in changes] == sorted(int(c["time"]) for c in changes)

    for run_id in (1, 2):
        await daggy.finished(run_id)
    listed = await daggy.ok("GET", "/v1/dagruns?all=1")
    assert [r["runID"] for r in listed] == [0, 1, 2]
    for item in listed:
        same_shape(EXAMPLE_LIST_ITEM, item)
        assert item["tag"] == "mediumtest" and item["state"] == "COMPLETED"
        assert item["taskCounts"] == {"COMPLETED": 2}
    # As in the example: the run started at its QUEUED change, last changed when it ended.
    assert listed[0]["startTime"] == changes[0]["time"]
    assert listed[0]["lastUpdate"] == changes[-1]["time"]
    assert await daggy.ok("GET", "/v1/dagruns") == []  # none is still running

    assert await daggy.ok("GET", "/v1/dagrun/0/task/simple_0") == example_task("1")
    assert await daggy.ok("GET", "/v1/dagrun/0/state") == {"state": "COMPLETED"}
    assert await daggy.ok("GET", "/v1/dagrun/0/task/simple_0/state") == {"state": "COMPLETED"}


async def test_kill_and_restart_as_daggy_does(daggy):
    dag = {
        "tag": "sleepy",
        "tasks": {
            "a": {"job": {"command": ["/bin/sleep", "60"]}},
            "b": {"job": {"command": ["/bin/echo", "b"]}, "parents": ["a"]},
        },
    }
    run_id = (await daggy.ok("POST", "/v1/dagrun", dag))["runID"]
    assert run_id == 0
    deadline = time.monotonic() + 20
    while (await daggy.ok("GET", "/v1/dagrun/0/task/a/state"))["state"] != "RUNNING":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)

    # DELETE of one task, then of the run: 200 with no body at all.
    status, reply, _ = await daggy.send("DELETE", "/v1/dagrun/0/task/a")
    assert (status, reply) == (200, None)
    assert await daggy.ok("GET", "/v1/dagrun/0/task/a/state") == {"state": "KILLED"}
    status, reply, _ = await daggy.send("DELETE", "/v1/dagrun/0")
    assert (status, reply) == (200, None)
    run = await daggy.finished(0)
    assert run["taskStates"] == {"a": "KILLED", "b": "QUEUED"}

    # PATCH .../state/QUEUED restarts it: {"runID": 0}, and the run is QUEUED again before
    # it runs, in its state changes.
    before = [c["state"] for c in run["dagStateChanges"]]
    assert await daggy.ok("PATCH", "/v1/dagrun/0/state/QUEUED") == {"runID": 0}
    states = [c["state"] for c in (await daggy.ok("GET", "/v1/dagrun/0"))["dagStateChanges"]]
    assert states[: len(before)] == before
    assert states[len(before) : len(before) + 2] == ["QUEUED", "RUNNING"]
    status, reply, _ = await daggy.send("DELETE", "/v1/dagrun/0")
    assert (status, reply) == (200, None)

    # What is not there: 404 with Daggy's error object.
    status, reply, _ = await daggy.send("GET", "/v1/dagrun/7")
    assert status == 404 and "no DAG run 7" in reply["error"]


async def test_anonymous_daggy_callers_are_refused_by_default_naming_the_option(tmp_path):
    server = Server(tmp_path)
    await server.start()
    try:
        daggy = Daggy(server)
        for method, path, body in [
            ("POST", "/v1/dagrun", EXAMPLE_DAG),
            ("GET", "/v1/dagruns?all=1", None),
            ("GET", "/v1/dagrun/0", None),
        ]:
            status, reply, _ = await daggy.send(method, path, body)
            assert status == 401, (method, path)
            assert (
                "--daggy-anonymous" in reply["error"] and "TASKD_DAGGY_ANONYMOUS" in reply["error"]
            )
    finally:
        server.stop()
    server = Server(tmp_path, "--daggy-anonymous")
    await server.start()
    try:
        # A wrong credential is refused even when anonymous callers are let in.
        status, reply = await server.request(
            "GET", "/v1/dagruns", headers={"Authorization": "Bearer wrong"}
        )
        assert status == 401
        # Other families still need credentials.
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/apis/v1/tasks") as resp:
                assert resp.status == 401
            async with session.get(f"{server.url}/api/process_definitions") as resp:
                assert resp.status == 401
    finally:
        server.stop()


def test_daggy_anonymous_is_refused_beyond_loopback(tmp_path):
    result = CliRunner().invoke(
        main,
        ["serve", "--db", str(tmp_path / "x.db"), "--host", "0.0.0.0", "--admin-token", "t",
         "--daggy-anonymous"],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "refusing --daggy-anonymous on 0.0.0.0" in result.output


async def test_databases_from_before_number_their_dag_runs_in_order(tmp_path):
    """Upgrading numbers the DAG runs already stored 0, 1, 2... and new ones after them."""
    path = tmp_path / "taskd.db"
    store = await Store.open(path)
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX runs_kind_no")
        db.execute("ALTER TABLE runs DROP COLUMN kind_no")
        db.execute("DROP TABLE kind_counters")
        db.execute("PRAGMA user_version = 5")  # as a database before this migration
        for i, kind in enumerate(["task", "dag", "process", "dag", "dag"]):
            db.execute(
                "INSERT INTO runs (uuid, kind, name, trigger, state, created_at, updated_at)"
                " VALUES (?, ?, 'x', 'api', 'succeeded', 0, 0)",
                (f"u{i}", kind),
            )
    store = await Store.open(path)
    await store.close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT kind, kind_no FROM runs ORDER BY id").fetchall()
        assert rows == [("task", None), ("dag", 0), ("process", None), ("dag", 1), ("dag", 2)]
        assert db.execute("SELECT next FROM kind_counters WHERE kind = 'dag'").fetchone() == (3,)
