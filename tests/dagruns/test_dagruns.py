"""DAG runs (Daggy API) end to end: real HTTP app, real SQLite, local processes."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time

import orjson
import pytest

from taskd.auth import issue_token
from taskd.dagruns import store as dagruns_store
from taskd.http.keys import SERVICES
from tests.core.test_engine import live_group_members

SCRIPT = """\
import os, sys
value = os.environ.get("DAGGY_TEST")
found = "found" if value is not None else "not found"
print(f"Echoing script.py {sys.argv[1]} env is {found}, value is >>{value or ''}<< ")
"""


@pytest.fixture
async def api(make_client, admin_headers):
    client = await make_client()
    return Api(client, admin_headers)


class Api:
    """The Daggy routes as a test sees them, with admin credentials."""

    def __init__(self, client, headers) -> None:
        self.client = client
        self.headers = headers

    @property
    def engine(self):
        return self.client.app[SERVICES].engine

    async def call(self, method: str, path: str, body=None, status: int = 200, headers=None):
        data = body if isinstance(body, bytes | None) else orjson.dumps(body)
        resp = await self.client.request(
            method, path, data=data, headers=self.headers if headers is None else headers
        )
        raw = await resp.read()
        payload = orjson.loads(raw) if raw else None  # Daggy's DELETE answers no body
        assert resp.status == status, payload
        return payload

    async def submit(self, dag) -> int:
        return (await self.call("POST", "/v1/dagrun", dag))["runID"]

    async def run(self, run_id: int):
        return await self.call("GET", f"/v1/dagrun/{run_id}")

    async def core_id(self, run_id: int) -> int:
        """The core run id of a Daggy runID (its number among DAG runs)."""
        store = self.client.app[SERVICES].store
        return (await store.read(dagruns_store.dag_run, run_id))["id"]

    async def finished(self, run_id: int, within: float = 30):
        """The run record once the run has ended."""
        run = self.engine.runs.get(await self.core_id(run_id))
        if run is not None:
            await asyncio.wait_for(run.done.wait(), within)
        return await self.run(run_id)

    async def task_state(self, run_id: int, name: str) -> str:
        path = f"/v1/dagrun/{run_id}/task/{name}/state"
        return (await self.call("GET", path))["state"]

    async def until_task(self, run_id: int, name: str, state: str, within: float = 10) -> None:
        deadline = time.monotonic() + within
        while (got := await self.task_state(run_id, name)) != state:
            assert time.monotonic() < deadline, f"{name} is {got}, not {state}"
            await asyncio.sleep(0.02)


def ns(value: str) -> int:
    assert value.isdigit(), value
    return int(value)


def job(*argv: str, **more) -> dict:
    return {"command": list(argv), **more}


async def test_seed_example_runs_to_completed(api, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    dag = {
        "tag": "mediumtest",
        "parameters": {"JOBNO": ["1", "2"]},
        "tasks": {
            "simple": {
                "job": {
                    "command": [sys.executable, str(script), "{{JOBNO}}"],
                    "cores": "1",
                    "memoryMB": "100",
                }
            }
        },
    }
    assert await api.call("POST", "/v1/dagrun/validate", dag) == {"valid": True}
    run_id = await api.submit(dag)
    assert isinstance(run_id, int)
    run = await api.finished(run_id)

    assert run["runID"] == run_id and run["tag"] == "mediumtest"
    assert set(run["tasks"]) == {"simple_0", "simple_1"}
    for i, name in enumerate(["simple_0", "simple_1"]):
        arg = str(i + 1)
        expected_task = {
            "maxRetries": 0,
            "retryIntervalSeconds": 0,
            "job": {"command": [sys.executable, str(script), arg], "cores": "1",
                    "memoryMB": "100", "environment": []},
            "children": [],
            "parents": [],
            "isGenerator": False,
        }  # fmt: skip
        assert run["tasks"][name] == expected_task
        assert await api.call("GET", f"/v1/dagrun/{run_id}/task/{name}") == expected_task
        assert run["taskStates"][name] == "COMPLETED"
        (attempt,) = run["taskAttempts"][name]
        assert attempt["rc"] == 0
        assert attempt["outputLog"] == f"Echoing script.py {arg} env is not found, value is >><< \n"
        assert attempt["errorLog"] == "" and attempt["executorLog"] == ""
        assert ns(attempt["startTime"]) <= ns(attempt["stopTime"])
    changes = run["dagStateChanges"]
    assert [c["state"] for c in changes] == ["QUEUED", "RUNNING", "COMPLETED"]
    times = [ns(c["time"]) for c in changes]
    assert times == sorted(times)

    assert await api.call("GET", f"/v1/dagrun/{run_id}/state") == {"state": "COMPLETED"}
    assert await api.call("GET", f"/v1/dagrun/{run_id}/task/simple_1/state") == {
        "state": "COMPLETED"
    }
    assert await api.call("GET", "/v1/dagruns") == []  # only unfinished runs without all=1
    (listed,) = await api.call("GET", "/v1/dagruns?all=1")
    assert listed == {
        "runID": run_id,
        "tag": "mediumtest",
        "state": "COMPLETED",
        "startTime": changes[0]["time"],
        "lastUpdate": changes[-1]["time"],
        "taskCounts": {"COMPLETED": 2},
    }


async def test_parameterised_tasks_depending_on_each_other(api):
    dag = {
        "parameters": {"A": ["a1", "a2"], "B": ["b1", "b2", "b3"], "UNUSED": "x"},
        "tasks": {
            "setup": {"job": job("/bin/echo", "setup"), "children": ["parent"]},
            "parent": {"job": job("/bin/echo", "{{A}}")},
            "child": {
                "job": job("/bin/echo", "{{A}}-{{B}}", "{{NOT_A_PARAMETER}}"),
                "parents": ["parent"],
            },
        },
    }
    run = await api.finished(await api.submit(dag))
    tasks = run["tasks"]
    parents = ["parent_0", "parent_1"]
    children = [f"child_{i}" for i in range(6)]
    assert list(tasks) == ["setup", *parents, *children]
    assert [tasks[p]["job"]["command"][1] for p in parents] == ["a1", "a2"]
    combos = [f"{a}-{b}" for a, b in itertools.product(["a1", "a2"], ["b1", "b2", "b3"])]
    assert [tasks[c]["job"]["command"][1:] for c in children] == [
        [combo, "{{NOT_A_PARAMETER}}"] for combo in combos
    ]
    assert tasks["setup"]["children"] == parents
    for p in parents:
        assert tasks[p]["parents"] == ["setup"] and tasks[p]["children"] == children
    for c in children:
        assert tasks[c]["parents"] == parents and tasks[c]["children"] == []
    assert set(run["taskStates"].values()) == {"COMPLETED"}
    attempts = {name: a for name, (a,) in run["taskAttempts"].items()}
    assert attempts["child_4"]["outputLog"] == "a2-b2 {{NOT_A_PARAMETER}}\n"
    last_parent = max(ns(attempts[p]["stopTime"]) for p in parents)
    assert all(ns(attempts[c]["startTime"]) >= last_parent for c in children)
    assert all(ns(attempts[p]["startTime"]) >= ns(attempts["setup"]["stopTime"]) for p in parents)


async def test_environment_and_timeout(api):
    dag = {
        "parameters": {"WHO": ["world"]},
        "tasks": {
            "greet": {
                "job": job("/bin/sh", "-c", 'echo "hello $WHO"', environment=["WHO={{WHO}}"])
            },
            "slow": {"job": job("/bin/sleep", "30", timeoutSeconds=0.3)},
        },
    }
    run = await api.finished(await api.submit(dag))
    assert run["tasks"]["greet_0"]["job"]["environment"] == ["WHO=world"]
    assert run["taskAttempts"]["greet_0"][0]["outputLog"] == "hello world\n"
    assert run["taskStates"] == {"greet_0": "COMPLETED", "slow": "ERRORED"}
    (slow,) = run["taskAttempts"]["slow"]
    assert "limit of 0.3 seconds" in slow["executorLog"]
    assert run["dagStateChanges"][-1]["state"] == "ERRORED"


async def test_generator_adds_tasks_between_itself_and_its_children(api, tmp_path):
    output = tmp_path / "generated.json"
    output.write_text(
        orjson.dumps(
            {
                "made": {"job": job("/bin/echo", "made", "{{N}}")},
                "after_made": {"job": job("/bin/echo", "after"), "parents": ["made"]},
            }
        ).decode()
    )
    dag = {
        "parameters": {"N": ["1", "2"]},
        "tasks": {
            "gen": {"job": job("/bin/cat", str(output)), "isGenerator": True,
                    "children": ["final"]},
            "final": {"job": job("/bin/echo", "final")},
        },
    }  # fmt: skip
    run = await api.finished(await api.submit(dag))
    assert run["dagStateChanges"][-1]["state"] == "COMPLETED"
    tasks = run["tasks"]
    assert set(tasks) == {"gen", "final", "made_0", "made_1", "after_made"}
    assert tasks["gen"]["isGenerator"] is True
    assert tasks["made_1"]["job"]["command"] == ["/bin/echo", "made", "2"]
    assert tasks["made_0"]["parents"] == ["gen"]
    assert tasks["made_0"]["children"] == ["final", "after_made"]
    assert tasks["after_made"]["parents"] == ["gen", "made_0", "made_1"]
    assert sorted(tasks["final"]["parents"]) == ["after_made", "gen", "made_0", "made_1"]
    attempts = {name: a for name, (a,) in run["taskAttempts"].items()}
    gen_end = ns(attempts["gen"]["stopTime"])
    for name in ("made_0", "made_1", "after_made"):
        assert ns(attempts[name]["startTime"]) >= gen_end
        assert ns(attempts[name]["stopTime"]) <= ns(attempts["final"]["startTime"])
    assert attempts["made_0"]["outputLog"] == "made 1\n"


async def test_bad_generator_output_errors_the_generator(api):
    dag = {
        "tasks": {
            "gen": {"job": job("/bin/echo", "this is not JSON"), "isGenerator": True},
            "after": {"job": job("/bin/echo", "never"), "parents": ["gen"]},
        }
    }
    run = await api.finished(await api.submit(dag))
    assert run["taskStates"] == {"gen": "ERRORED", "after": "QUEUED"}
    assert run["dagStateChanges"][-1]["state"] == "ERRORED"
    (attempt,) = run["taskAttempts"]["gen"]
    assert attempt["rc"] == 0 and attempt["outputLog"] == "this is not JSON\n"
    assert "generator output rejected: the output is not JSON" in attempt["executorLog"]
    assert run["taskAttempts"]["after"] == []

    # Well-formed JSON that names a task twice is rejected with every reason.
    bad = {"gen": {"job": job("/bin/echo", "x")}, "other": {"job": {}}}
    dag["tasks"]["gen"]["job"] = job("/bin/echo", orjson.dumps(bad).decode())
    run = await api.finished(await api.submit(dag))
    log = run["taskAttempts"]["gen"][0]["executorLog"]
    assert "'gen' (from 'gen') already exists" in log
    assert "output.other.job.command must be a non-empty array" in log


async def test_retries_then_resume_after_the_cause_is_fixed(api, tmp_path):
    flag = tmp_path / "fixed"
    check = f"import os, sys; sys.exit(0 if os.path.exists({str(flag)!r}) else 3)"
    dag = {
        "tasks": {
            "ok": {"job": job("/bin/echo", "fine")},
            "flaky": {
                "job": job(sys.executable, "-c", check),
                "maxRetries": 2,
                "retryIntervalSeconds": 0.4,
                "parents": ["ok"],
            },
            "after": {"job": job("/bin/echo", "after"), "parents": ["flaky"]},
        }
    }
    run_id = await api.submit(dag)
    await api.until_task(run_id, "flaky", "RETRY")
    run = await api.finished(run_id)
    assert run["taskStates"] == {"ok": "COMPLETED", "flaky": "ERRORED", "after": "QUEUED"}
    flaky = run["taskAttempts"]["flaky"]
    assert [a["rc"] for a in flaky] == [3, 3, 3]
    gaps = [(ns(b["startTime"]) - ns(a["stopTime"])) / 1e9 for a, b in itertools.pairwise(flaky)]
    assert all(0.4 <= gap < 3 for gap in gaps), gaps
    assert run["taskAttempts"]["after"] == []
    assert [c["state"] for c in run["dagStateChanges"]] == ["QUEUED", "RUNNING", "ERRORED"]
    (listed,) = await api.call("GET", "/v1/dagruns?all=1")
    assert listed["taskCounts"] == {"COMPLETED": 1, "ERRORED": 1, "QUEUED": 1}

    # Only ERRORED/KILLED runs resume, and only to QUEUED or RUNNING.
    await api.call("PATCH", f"/v1/dagrun/{run_id}/state/COMPLETED", status=400)
    flag.write_text("")
    assert await api.call("PATCH", f"/v1/dagrun/{run_id}/state/QUEUED") == {"runID": run_id}
    run = await api.finished(run_id)
    assert set(run["taskStates"].values()) == {"COMPLETED"}
    assert [a["rc"] for a in run["taskAttempts"]["flaky"]] == [3, 3, 3, 0]
    assert len(run["taskAttempts"]["ok"]) == 1 and len(run["taskAttempts"]["after"]) == 1
    assert [c["state"] for c in run["dagStateChanges"]] == [
        "QUEUED", "RUNNING", "ERRORED", "QUEUED", "RUNNING", "COMPLETED"
    ]  # fmt: skip
    body = await api.call("PATCH", f"/v1/dagrun/{run_id}/state/QUEUED", status=400)
    assert "COMPLETED" in body["error"]


def running_pids(engine) -> list[int]:
    return [a.started.pid for a in engine.live.values() if a.started is not None]


async def until_started(engine, n: int, within: float = 10) -> None:
    """A task is RUNNING as soon as its attempt is recorded; its process comes a moment later."""
    deadline = time.monotonic() + within
    while len(running_pids(engine)) < n:
        assert time.monotonic() < deadline, f"{len(running_pids(engine))} of {n} started"
        await asyncio.sleep(0.02)


async def test_delete_run_kills_its_processes(api):
    dag = {
        "tag": "sleepy",
        "tasks": {
            "a": {"job": job("/bin/sh", "-c", "sleep 60 & sleep 60; wait")},
            "b": {"job": job("/bin/sleep", "60")},
            "c": {"job": job("/bin/echo", "never"), "parents": ["a"]},
        },
    }
    run_id = await api.submit(dag)
    await api.until_task(run_id, "a", "RUNNING")
    await api.until_task(run_id, "b", "RUNNING")
    await until_started(api.engine, 2)
    (listed,) = await api.call("GET", "/v1/dagruns")
    assert listed["state"] == "RUNNING" and listed["taskCounts"] == {"RUNNING": 2, "QUEUED": 1}
    pids = running_pids(api.engine)
    assert len(pids) == 2
    t0 = time.monotonic()
    reply = await api.call("DELETE", f"/v1/dagrun/{run_id}")
    assert reply is None  # Daggy answers a DELETE with no body
    assert time.monotonic() - t0 < 5
    assert await api.call("GET", f"/v1/dagrun/{run_id}/state") == {"state": "KILLED"}
    assert [p for pid in pids for p in live_group_members(pid)] == []
    run = await api.run(run_id)
    assert run["taskStates"] == {"a": "KILLED", "b": "KILLED", "c": "KILLED"}
    assert run["dagStateChanges"][-1]["state"] == "KILLED"
    assert [a["rc"] for a in run["taskAttempts"]["b"]] == [143]
    assert "killed by request" in run["taskAttempts"]["b"][0]["executorLog"]
    assert await api.call("GET", "/v1/dagruns") == []

    # A killed run resumes like an errored one.
    await api.call("PATCH", f"/v1/dagrun/{run_id}/state/RUNNING")
    await api.until_task(run_id, "b", "RUNNING")
    await api.call("DELETE", f"/v1/dagrun/{run_id}")
    assert await api.call("GET", f"/v1/dagrun/{run_id}/state") == {"state": "KILLED"}


async def test_delete_task_kills_just_that_task(api):
    dag = {
        "tasks": {
            "a": {"job": job("/bin/sleep", "60")},
            "b": {"job": job("/bin/sleep", "60")},
            "c": {"job": job("/bin/echo", "never"), "parents": ["a"]},
        }
    }
    run_id = await api.submit(dag)
    await api.until_task(run_id, "a", "RUNNING")
    await api.until_task(run_id, "b", "RUNNING")
    await until_started(api.engine, 2)
    reply = await api.call("DELETE", f"/v1/dagrun/{run_id}/task/a")
    assert reply is None
    assert await api.task_state(run_id, "a") == "KILLED"
    assert await api.task_state(run_id, "b") == "RUNNING"
    assert await api.task_state(run_id, "c") == "QUEUED"
    assert await api.call("GET", f"/v1/dagrun/{run_id}/state") == {"state": "RUNNING"}
    assert len(running_pids(api.engine)) == 1
    await api.call("DELETE", f"/v1/dagrun/{run_id}/task/nope", status=404)
    await api.call("DELETE", f"/v1/dagrun/{run_id}")
    run = await api.run(run_id)
    # c never ran: its parent was killed first, and Daggy leaves such tasks QUEUED.
    assert run["taskStates"] == {"a": "KILLED", "b": "KILLED", "c": "QUEUED"}


BAD_DAGS = [
    ({"tasks": {"a": {"job": job("/bin/true"), "parents": ["b"]},
                "b": {"job": job("/bin/true"), "parents": ["a"]}}}, ["cycle: a -> b -> a"]),
    ({"tasks": {"a": {"job": job("/bin/true"), "children": ["a"]}}}, ["cycle: a -> a"]),
    ({"tasks": {"a": {"job": job("/bin/true"), "parents": ["ghost"]}}},
     ["names parent 'ghost'"]),
    ({"tasks": {"a": {"job": job("/bin/true"), "children": ["ghost"]}}},
     ["names child 'ghost'"]),
    ({"tasks": {"a": {}}}, ["tasks.a.job is required"]),
    ({"tasks": {"a": {"job": {"command": []}}}}, ["tasks.a.job.command must be"]),
    ({"parameters": {"X": []}, "tasks": {"a": {"job": job("/bin/true")}}},
     ["parameters.X must have at least one value"]),
    ({"parameters": {"X": {"a": 1}}, "tasks": {"a": {"job": job("/bin/true")}}},
     ["parameters.X must be a string or a number"]),
    ({"parameters": ["X"], "tasks": {"a": {"job": job("/bin/true")}}},
     ["parameters must be an object"]),
    ({"tasks": {"a": {"job": job("/bin/true", cores="lots"), "maxRetries": -1}}},
     ["tasks.a.job.cores must be a number", "tasks.a.maxRetries must be an integer from 0"]),
    ({"tasks": {"a": {"job": job("/bin/true", cores=100000)}}}, ["tasks.a.job.cores must be"]),
    ({"tasks": {"a": {"job": job("/bin/true", cores=1000)}}}, ["this host offers"]),
    ({"tasks": {"a": {"job": job("/bin/true", environment=["NOEQUALS"])}}},
     ["environment[0] must be a 'NAME=value' string"]),
    ({"tasks": {"a": {"job": job("/bin/true"), "parent": ["b"]}}},
     ["tasks.a.parent is not a known field"]),
    ({"tasks": {}}, ["tasks must be an object with at least one task"]),
    ({"tag": 5}, ["tag must be a string", "tasks must be an object"]),
    ([1, 2], ["the DAG must be a JSON object"]),
    (b"{not json", ["not valid JSON"]),
    (b"", ["body is empty"]),
]  # fmt: skip


@pytest.mark.parametrize(("dag", "wanted"), BAD_DAGS)
async def test_bad_dags_are_refused_with_every_reason(api, dag, wanted):
    body = await api.call("POST", "/v1/dagrun/validate", dag, status=400)
    assert body["valid"] is False
    for text in wanted:
        assert any(text in e for e in body["errors"]), (text, body["errors"])
    body = await api.call("POST", "/v1/dagrun", dag, status=400)
    assert set(body) == {"error", "errors"}
    for text in wanted:
        assert any(text in e for e in body["errors"]), (text, body["errors"])
    assert await api.call("GET", "/v1/dagruns?all=1") == []


async def test_unknown_runs_tasks_and_states(api):
    run_id = await api.finished(await api.submit({"tasks": {"a": {"job": job("/bin/true")}}}))
    run_id = run_id["runID"]
    for method, path in [
        ("GET", "/v1/dagrun/999"),
        ("DELETE", "/v1/dagrun/999"),
        ("GET", "/v1/dagrun/999/state"),
        ("PATCH", "/v1/dagrun/999/state/QUEUED"),
        ("GET", f"/v1/dagrun/{run_id}/task/nope"),
        ("GET", f"/v1/dagrun/{run_id}/task/nope/state"),
        ("GET", "/v1/dagrun/99999999999999999999999999"),
    ]:
        assert "error" in await api.call(method, path, status=404)
    for method, path in [
        ("GET", "/v1/dagrun/abc"),
        ("GET", "/v1/dagrun/1.5/state"),
        ("GET", "/v1/dagrun/-1"),
        ("DELETE", "/v1/dagrun/%C2%B2"),
    ]:
        # run ids are digits in the route itself: anything else names no route
        assert "no route" in (await api.call(method, path, status=404))["error"]
    resp = await api.client.get("/v1/dagrun/validate", headers=api.headers)
    assert resp.status == 405 and resp.headers["Allow"] == "POST"
    await api.call("PATCH", f"/v1/dagrun/{run_id}/state/BOGUS", status=400)
    await api.call("GET", "/v1/dagruns?all=maybe", status=400)
    # DELETE of a finished run changes nothing.
    assert await api.call("DELETE", f"/v1/dagrun/{run_id}") is None
    assert await api.call("GET", f"/v1/dagrun/{run_id}/state") == {"state": "COMPLETED"}


async def test_reading_needs_a_token_and_changing_needs_admin(api):
    viewer = await issue_token(api.client.app[SERVICES].store, "viewer", "viewer")
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    dag = {"tasks": {"a": {"job": job("/bin/true")}}}
    await api.call("GET", "/v1/dagruns", status=401, headers={})
    await api.call("POST", "/v1/dagrun", dag, status=401, headers={})
    assert await api.call("GET", "/v1/dagruns", headers=as_viewer) == []
    assert await api.call("POST", "/v1/dagrun/validate", dag, headers=as_viewer) == {"valid": True}
    await api.call("POST", "/v1/dagrun", dag, status=403, headers=as_viewer)
    run_id = await api.submit(dag)
    await api.finished(run_id)
    await api.call("GET", f"/v1/dagrun/{run_id}", headers=as_viewer)
    await api.call("DELETE", f"/v1/dagrun/{run_id}", status=403, headers=as_viewer)
    await api.call("PATCH", f"/v1/dagrun/{run_id}/state/QUEUED", status=403, headers=as_viewer)


async def test_cores_and_memory_count_against_capacity(make_client, admin_headers):
    api = Api(await make_client(cpus=1.0, memory_mb=150), admin_headers)
    nap = job("/bin/sleep", "0.3")
    dag = {
        "tasks": {
            "a": {"job": {**nap, "cores": "1"}},
            "b": {"job": {**nap, "cores": 1}},
            "c": {"job": {**nap, "memoryMB": "100"}},
            "d": {"job": {**nap, "memoryMB": 100}},
        }
    }
    run = await api.finished(await api.submit(dag))
    spans = {n: (ns(a["startTime"]), ns(a["stopTime"])) for n, (a,) in run["taskAttempts"].items()}
    for x, y in (("a", "b"), ("c", "d")):
        first, second = sorted([spans[x], spans[y]])
        assert first[1] <= second[0], f"{x} and {y} overlapped"


async def test_run_list_counts_agree_with_the_stored_tasks(api, tmp_path):
    """The list counts a run submitted here as its changes commit (not from the task rows):
    through a failure, generated tasks, a running task and a kill, it says what the store
    holds."""
    from taskd.dagruns.routes import TASK_STATES

    output = tmp_path / "gen.json"
    output.write_bytes(orjson.dumps({"slow": {"job": job("/bin/sleep", "60")}}))
    dag = {
        "tasks": {
            "fails": {"job": job("/bin/false")},
            "after_fail": {"job": job("/bin/true"), "parents": ["fails"]},
            "gen": {"job": job("/bin/cat", str(output)), "isGenerator": True,
                    "children": ["last"]},
            "last": {"job": job("/bin/true")},
        },
    }  # fmt: skip
    run_id = await api.submit(dag)
    core = await api.core_id(run_id)
    store = api.client.app[SERVICES].store

    async def stored_counts() -> dict[str, int]:
        counts, _ = (await store.read(dagruns_store.task_counts, [core]))[core]
        out: dict[str, int] = {}
        for state, n in counts.items():
            out[TASK_STATES[state]] = out.get(TASK_STATES[state], 0) + n
        return out

    await api.until_task(run_id, "gen", "COMPLETED")  # "slow" exists from here on
    await api.until_task(run_id, "slow", "RUNNING")
    await api.until_task(run_id, "fails", "ERRORED")
    (listed,) = await api.call("GET", "/v1/dagruns")
    assert listed["taskCounts"] == await stored_counts()
    assert listed["taskCounts"] == {"COMPLETED": 1, "ERRORED": 1, "RUNNING": 1, "QUEUED": 2}
    await api.call("DELETE", f"/v1/dagrun/{run_id}")
    (listed,) = await api.call("GET", "/v1/dagruns?all=1")
    assert listed["taskCounts"] == await stored_counts()
    assert listed["state"] == "KILLED"
