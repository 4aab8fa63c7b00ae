"""Container tasks (Drove) without containers: validation, auth, duplicates, kill, search.

Most tests run with ``max_parallel=0``, so an accepted task stays PENDING and never reaches
the Docker engine: everything the API decides before a container starts is seen here.
"""

from __future__ import annotations

import asyncio
import base64
import time

import pytest

from taskd.containertasks.routes import incomplete_utf8
from taskd.containertasks.spec import parse_duration
from tests.conftest import ADMIN

BASIC = {"Authorization": "Basic " + base64.b64encode(f"admin:{ADMIN}".encode()).decode()}
OPS = "/apis/v1/tasks/operations"
OP_SPEC = {"timeout": "5m", "parallelism": 1, "failureStrategy": "STOP"}


def spec(task_id: str = "T0012", app: str = "TEST_APP", **changes: object) -> dict:
    doc = {
        "sourceAppName": app,
        "taskId": task_id,
        "executable": {
            "type": "DOCKER",
            "url": "taskd-test:latest",
            "dockerPullTimeout": "100 seconds",
        },
        "resources": [{"type": "CPU", "count": 1}, {"type": "MEMORY", "sizeInMB": 64}],
        "env": {"ITERATIONS": "10"},
        "args": ["sh", "-c", "echo hi"],
        "tags": {"team": "a"},
    }
    doc.update(changes)
    return doc


def create(doc: dict) -> dict:
    return {"type": "CREATE", "spec": doc, "opSpec": OP_SPEC}


def kill(task_id: str, app: str = "TEST_APP", timeout: str = "5 seconds") -> dict:
    return {"type": "KILL", "sourceAppName": app, "taskId": task_id, "opSpec": {"timeout": timeout}}


@pytest.fixture
async def idle(make_client):
    """A server whose tasks never start (no slot), so no container is ever made."""
    return await make_client(max_parallel=0)


async def refused(client, body: dict) -> list[str]:
    resp = await client.post(OPS, json=body, headers=BASIC)
    assert resp.status == 400, await resp.text()
    doc = await resp.json()
    assert doc["status"] == "FAILED" and doc["message"].startswith("Command validation failure")
    return doc["data"]["validationErrors"]


# -- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds", "shown"),
    [
        ("5m", 300, "5 minutes"),
        ("100 seconds", 100, "100 seconds"),
        ("300 seconds", 300, "300 seconds"),
        ("15 minutes", 900, "15 minutes"),
        ("1h", 3600, "1 hour"),
        ("500ms", 0.5, "500 milliseconds"),
        ("1 second", 1, "1 second"),
        ("2d", 172800, "2 days"),
    ],
)
def test_drove_durations(text, seconds, shown):
    got_seconds, got_shown = parse_duration(text)
    assert got_seconds == pytest.approx(seconds)
    assert got_shown == shown


@pytest.mark.parametrize("text", ["", "5", "m", "1.5m", "-5m", "5 M", "5 parsecs", " 5m", "5m ",
                                  "5 m s", "5minutes!", "400d"])  # fmt: skip
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_incomplete_utf8_tail():
    assert incomplete_utf8(b"abc") == 0
    assert incomplete_utf8("é".encode()) == 0
    assert incomplete_utf8("aé".encode()[:-1]) == 1
    assert incomplete_utf8("a€".encode()[:-1]) == 2
    assert incomplete_utf8("a😀".encode()[:-1]) == 3


# -- auth -----------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/apis/v1/ping"),
    ("POST", "/apis/v1/tasks/validate/spec"),
    ("GET", "/apis/v1/tasks"),
    ("POST", OPS),
    ("POST", "/apis/v1/tasks/search"),
    ("GET", "/apis/v1/tasks/A/instances/T"),
    ("DELETE", "/apis/v1/tasks/A/instances/T"),
    ("GET", "/apis/v1/logfiles/tasks/A/T/list"),
    ("GET", "/apis/v1/logfiles/tasks/A/T/read/output.log"),
    ("GET", "/apis/v1/logfiles/tasks/A/T/download/output.log"),
]


async def test_every_route_needs_credentials(idle):
    wrong = {"Authorization": "Basic " + base64.b64encode(b"admin:nope").decode()}
    for method, path in ROUTES:
        for headers in ({}, wrong):
            resp = await idle.request(method, path, headers=headers, json={})
            assert resp.status == 401, (method, path)
            body = await resp.json()
            assert body["status"] == "FAILED" and body["message"], (method, path)
            # A Basic challenge would make a browser prompt for (and cache) a password.
            assert not resp.headers["WWW-Authenticate"].startswith("Basic")


async def test_basic_and_bearer_credentials_are_accepted(idle, admin_headers):
    for headers in (BASIC, admin_headers):
        resp = await idle.get("/apis/v1/tasks", headers=headers)
        assert resp.status == 200
        assert await resp.json() == {"status": "SUCCESS", "data": [], "message": "success"}


# -- CREATE validation ----------------------------------------------------------------------


async def test_missing_fields_are_listed_together(idle):
    errors = await refused(idle, {"type": "CREATE", "spec": {}, "opSpec": {}})
    for field in ("sourceAppName", "taskId", "executable", "resources", "opSpec.timeout"):
        assert any(field in e for e in errors), (field, errors)
    errors = await refused(idle, {"type": "CREATE"})
    assert any("spec is required" in e for e in errors)
    assert any("opSpec is required" in e for e in errors)


async def test_bad_values_are_refused(idle):
    bad = spec(
        "bad id!",
        app="",
        executable={"type": "EXE", "url": "", "dockerPullTimeout": "ten seconds"},
        resources=[{"type": "CPU", "count": 0}, {"type": "MEMORY", "sizeInMB": 2}, {"type": "GPU"}],
        env={"A": 1},
        args=["x"] * 2049,
        color="red",
    )
    errors = await refused(idle, create(bad))
    text = "\n".join(errors)
    for needle in ("spec.taskId must match", "spec.sourceAppName", "type must be DOCKER",
                   "spec.executable.url must not be empty", "dockerPullTimeout",
                   "count must be at least 1", "sizeInMB must be at least 6", "GPU",
                   "spec.env", "at most 2048", "spec.color is not a known field"):  # fmt: skip
        assert needle in text, (needle, errors)


async def test_bad_durations_in_operations(idle):
    body = create(spec())
    body["opSpec"] = {"timeout": "5 parsecs"}
    errors = await refused(idle, body)
    assert any("opSpec.timeout" in e and "unknown time unit" in e for e in errors)
    errors = await refused(idle, kill("T1", timeout="1.5m"))
    assert any("opSpec.timeout" in e for e in errors)
    errors = await refused(idle, create(spec(executable={"url": "x", "dockerPullTimeout": "0s"})))
    assert any("longer than zero" in e for e in errors)


async def test_unknown_type_and_bad_bodies(idle):
    errors = await refused(idle, {"type": "SCALE"})
    assert errors == ["type must be CREATE or KILL, got 'SCALE'"]
    json_basic = {**BASIC, "Content-Type": "application/json"}
    resp = await idle.post(OPS, data=b"{not json", headers=json_basic)
    assert resp.status == 400 and (await resp.json())["status"] == "FAILED"
    resp = await idle.post(OPS, json=[1, 2], headers=BASIC)
    assert resp.status == 400 and (await resp.json())["status"] == "FAILED"


async def test_volumes_only_from_the_allow_list(make_client, tmp_path):
    allowed = tmp_path / "shared"
    allowed.mkdir()
    (tmp_path / "link").symlink_to("/etc")
    client = await make_client(max_parallel=0, allowed_volumes=(str(allowed),))
    vols = [
        {"pathInContainer": "/a", "pathOnHost": "/etc", "mode": "READ_ONLY"},
        {
            "pathInContainer": "/b",
            "pathOnHost": str(allowed / ".." / ".." / "x"),
            "mode": "READ_WRITE",
        },
        {"pathInContainer": "/c", "pathOnHost": str(allowed / "sub"), "mode": "READ_WRITE"},
        {"pathInContainer": "/d", "pathOnHost": str(allowed), "mode": "READ_ONLY"},
        {"pathInContainer": "e", "pathOnHost": str(allowed), "mode": "RW"},
    ]
    errors = await refused(client, create(spec(volumes=vols)))
    assert any("volumes[0].pathOnHost" in e and "not in the allowed list" in e for e in errors)
    assert any("volumes[1].pathOnHost" in e for e in errors)
    assert not any("volumes[2]" in e or "volumes[3]" in e for e in errors), errors
    assert any("volumes[4].pathInContainer" in e for e in errors)
    assert any("volumes[4].mode" in e for e in errors)
    # A symlink inside an allowed directory does not lead outside it.
    (allowed / "escape").symlink_to("/etc")
    vols = [{"pathInContainer": "/a", "pathOnHost": str(allowed / "escape"), "mode": "READ_ONLY"}]
    errors = await refused(client, create(spec(volumes=vols)))
    assert any("not in the allowed list" in e for e in errors)
    # With no allow-list configured, no volume at all.
    idle = await make_client(max_parallel=0, db=tmp_path / "idle.db")  # one server per file
    vols = [{"pathInContainer": "/d", "pathOnHost": str(allowed), "mode": "READ_ONLY"}]
    assert any(
        "not in the allowed list" in e for e in await refused(idle, create(spec(volumes=vols)))
    )


async def test_more_than_the_host_has_is_refused(idle):
    resources = [{"type": "CPU", "count": 4096}, {"type": "MEMORY", "sizeInMB": 64}]
    errors = await refused(idle, create(spec(resources=resources)))
    assert any("not enough resources" in e and "4096" in e for e in errors)


async def test_unsupported_features_are_refused(idle):
    doc = spec(placementPolicy={"type": "LOCAL"}, devices=[{"type": "DIRECT"}],
               userSpec={"user": "1000"}, configs=[{"type": "INLINE"}])  # fmt: skip
    errors = await refused(idle, create(doc))
    assert "Local service placement is not allowed for tasks" in errors
    for field in ("spec.devices", "spec.userSpec", "spec.configs"):
        assert any(e.startswith(field) for e in errors), field


# -- life of a task that never starts ----------------------------------------------------------


async def test_create_answers_the_drove_task_id_and_shows_it_pending(idle):
    before = int(time.time() * 1000)
    resp = await idle.post(OPS, json=create(spec()), headers=BASIC)
    assert resp.status == 200
    assert await resp.json() == {
        "status": "SUCCESS", "data": {"taskId": "TEST_APP-T0012"}, "message": "success",
    }  # fmt: skip
    resp = await idle.get("/apis/v1/tasks/TEST_APP/instances/T0012", headers=BASIC)
    body = await resp.json()
    info = body["data"]
    assert body["status"] == "SUCCESS"
    assert info["state"] == "PENDING"
    assert info["instanceId"].startswith("TI-") and info["executorId"] and info["hostname"]
    assert info["executable"] == {
        "type": "DOCKER", "url": "taskd-test:latest", "dockerPullTimeout": "100 seconds",
    }  # fmt: skip
    assert info["resources"] == [
        {"type": "CPU", "cores": {"0": []}},
        {"type": "MEMORY", "memoryInMB": {"0": 64}},
    ]
    assert info["env"] == {"ITERATIONS": "10"} and info["volumes"] == [] and info["metadata"] == {}
    assert "taskResult" not in info and info["errorMessage"] == ""
    assert before <= info["created"] <= info["updated"] <= int(time.time() * 1000)
    resp = await idle.get("/apis/v1/tasks", headers=BASIC)
    assert [t["taskId"] for t in (await resp.json())["data"]] == ["T0012"]


async def test_duplicates_are_refused_until_the_record_is_deleted(idle):
    assert (await idle.post(OPS, json=create(spec()), headers=BASIC)).status == 200
    expected = "Task already exists for TEST_APP/T0012 with taskID: TEST_APP-T0012"
    assert await refused(idle, create(spec())) == [expected]
    # The same id under another app is another task.
    assert (await idle.post(OPS, json=create(spec(app="OTHER")), headers=BASIC)).status == 200

    resp = await idle.delete("/apis/v1/tasks/TEST_APP/instances/T0012", headers=BASIC)
    assert resp.status == 200  # Drove answers what cannot be deleted with 200 + FAILED
    body = await resp.json()
    assert body["status"] == "FAILED" and body["data"] == {"deleted": False}
    assert body["message"].startswith("Could not delete TEST_APP/T0012")
    assert "still active" in body["message"]

    resp = await idle.post(OPS, json=kill("T0012"), headers=BASIC)
    assert await resp.json() == {
        "status": "SUCCESS",
        "data": {"taskId": "T0012"},
        "message": "success",
    }
    info = (
        await (await idle.get("/apis/v1/tasks/TEST_APP/instances/T0012", headers=BASIC)).json()
    )["data"]
    assert info["state"] == "STOPPED"
    assert info["taskResult"] == {"status": "CANCELLED", "exitCode": -1}
    # Finished tasks still count as duplicates (Drove), until deleted.
    assert await refused(idle, create(spec())) == [expected]
    resp = await idle.delete("/apis/v1/tasks/TEST_APP/instances/T0012", headers=BASIC)
    assert await resp.json() == {
        "status": "SUCCESS",
        "data": {"deleted": True},
        "message": "success",
    }
    resp = await idle.get("/apis/v1/tasks/TEST_APP/instances/T0012", headers=BASIC)
    assert resp.status == 200 and (await resp.json())["status"] == "FAILED"
    assert (await idle.post(OPS, json=create(spec()), headers=BASIC)).status == 200


async def test_concurrent_creates_of_one_task_id_admit_one(idle):
    answers = await asyncio.gather(
        *(idle.post(OPS, json=create(spec("RACE")), headers=BASIC) for _ in range(5))
    )
    assert sorted(r.status for r in answers) == [200, 400, 400, 400, 400]
    resp = await idle.post("/apis/v1/tasks/search", json={"taskId": "RACE"}, headers=BASIC)
    assert len((await resp.json())["data"]) == 1


async def test_unknown_tasks(idle):
    # Drove: a missing task is 200 with the FAILED envelope, not an HTTP error.
    resp = await idle.get("/apis/v1/tasks/TEST_APP/instances/NOPE", headers=BASIC)
    assert resp.status == 200
    assert await resp.json() == {
        "status": "FAILED",
        "message": "No such task instance TEST_APP/NOPE",
    }
    resp = await idle.get("/apis/v1/tasks/TEST_APP/instances/bad%20id", headers=BASIC)
    assert resp.status == 200 and (await resp.json())["status"] == "FAILED"
    resp = await idle.delete("/apis/v1/tasks/TEST_APP/instances/NOPE", headers=BASIC)
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "FAILED" and body["data"] == {"deleted": False}
    assert body["message"].startswith("Could not delete TEST_APP/NOPE")
    errors = await refused(idle, kill("NOPE"))
    assert errors == ["Either task does not exist or has already finished for TEST_APP/NOPE"]
    resp = await idle.get("/apis/v1/logfiles/tasks/TEST_APP/NOPE/list", headers=BASIC)
    assert resp.status == 404


async def test_kill_of_a_finished_task_is_refused(idle):
    await idle.post(OPS, json=create(spec("K1")), headers=BASIC)
    assert (await idle.post(OPS, json=kill("K1"), headers=BASIC)).status == 200
    errors = await refused(idle, kill("K1"))
    assert errors == ["Either task does not exist or has already finished for TEST_APP/K1"]


async def test_log_files_of_a_task_not_started_yet(idle):
    await idle.post(OPS, json=create(spec("L1")), headers=BASIC)
    base = "/apis/v1/logfiles/tasks/TEST_APP/L1"
    assert await (await idle.get(f"{base}/list", headers=BASIC)).json() == {"files": []}
    resp = await idle.get(f"{base}/read/output.log?offset=-1&length=10", headers=BASIC)
    assert await resp.json() == {"data": "", "offset": 0}
    resp = await idle.get(f"{base}/read/output.log?offset=5", headers=BASIC)
    assert resp.status == 400
    resp = await idle.get(f"{base}/read/secrets.txt", headers=BASIC)
    assert resp.status == 404
    resp = await idle.get(f"{base}/read/output.log?offset=-2", headers=BASIC)
    assert resp.status == 400
    resp = await idle.get(f"{base}/download/output.log", headers=BASIC)
    assert resp.status == 200 and await resp.read() == b""
    assert resp.headers["Content-Disposition"] == "attachment; filename=output.log"


# -- search ---------------------------------------------------------------------------------


async def search(client, body: dict | None = None, **kwargs) -> list[str]:
    resp = await client.post("/apis/v1/tasks/search", json=body, headers=BASIC, **kwargs)
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    assert doc["status"] == "SUCCESS"
    return [f"{t['sourceAppName']}/{t['taskId']}" for t in doc["data"]]


async def test_search_by_app_prefix_state_and_time(idle):
    for app, task_id in (("APP_A", "build-1"), ("APP_A", "build-2"), ("APP_A", "deploy-1"),
                         ("APP_B", "build-1")):  # fmt: skip
        await idle.post(OPS, json=create(spec(task_id, app=app)), headers=BASIC)
    middle = int(time.time() * 1000) + 1
    await asyncio.sleep(0.005)  # created times are milliseconds: keep the last task apart
    await idle.post(OPS, json=create(spec("late", app="APP_B")), headers=BASIC)
    await idle.post(OPS, json=kill("build-2", app="APP_A"), headers=BASIC)

    assert await search(idle) == ["APP_B/late", "APP_B/build-1", "APP_A/deploy-1",
                                  "APP_A/build-2", "APP_A/build-1"]  # fmt: skip
    assert await search(idle, {"sourceAppName": "APP_A"}) == [
        "APP_A/deploy-1", "APP_A/build-2", "APP_A/build-1",
    ]  # fmt: skip
    assert await search(idle, {"taskIdPrefix": "build"}) == [
        "APP_B/build-1", "APP_A/build-2", "APP_A/build-1",
    ]  # fmt: skip
    assert await search(idle, {"sourceAppName": "APP_A", "taskIdPrefix": "BUILD"}) == []
    assert await search(idle, {"sourceAppName": "APP_A", "taskIdPrefix": "build"}) == [
        "APP_A/build-2", "APP_A/build-1",
    ]  # fmt: skip
    assert await search(idle, {"states": ["STOPPED"]}) == ["APP_A/build-2"]
    assert await search(idle, {"states": ["PENDING"], "taskIdPrefix": "build"}) == [
        "APP_B/build-1", "APP_A/build-1",
    ]  # fmt: skip
    assert await search(idle, {"from": middle}) == ["APP_B/late"]
    assert len(await search(idle, {"to": middle})) == 4
    assert await search(idle, {"taskId": "build-1"}) == ["APP_B/build-1", "APP_A/build-1"]
    assert await search(idle, {"limit": 2}) == ["APP_B/late", "APP_B/build-1"]
    assert await search(idle, {"states": ["PENDING"], "limit": 1}) == ["APP_B/late"]
    # The active list leaves the killed one out.
    resp = await idle.get("/apis/v1/tasks", headers=BASIC)
    active = [f"{t['sourceAppName']}/{t['taskId']}" for t in (await resp.json())["data"]]
    assert sorted(active) == ["APP_A/build-1", "APP_A/deploy-1", "APP_B/build-1", "APP_B/late"]


async def test_search_with_drove_form_fields(idle):
    await idle.post(OPS, json=create(spec("F1", app="FORMS")), headers=BASIC)
    form = {"taskSearchAppName": "FORMS", "taskSearchTaskID": "F1"}
    resp = await idle.post("/apis/v1/tasks/search", data=form, headers=BASIC)
    assert resp.status == 200
    assert [t["taskId"] for t in (await resp.json())["data"]] == ["F1"]
    assert await search(idle, {"taskSearchAppName": "FORMS"}) == ["FORMS/F1"]
    resp = await idle.post("/apis/v1/tasks/search", data={"taskSearchAppName": "FORMS"},
                           headers=BASIC)  # fmt: skip
    assert resp.status == 400
    assert (await resp.json())["data"]["validationErrors"] == ["taskSearchTaskID is required"]


async def test_search_validation(idle):
    body = {"states": ["DONE"], "limit": 0, "taskIdPrefix": "a b"}
    resp = await idle.post("/apis/v1/tasks/search", json=body, headers=BASIC)
    assert resp.status == 400
    errors = (await resp.json())["data"]["validationErrors"]
    assert len(errors) == 3 and any("DONE" in e for e in errors)


@pytest.mark.parametrize(
    "body",
    [
        {"type": "CREATE", "spec": "x", "opSpec": 5},
        create(spec(executable=[], resources="x", volumes={}, env=[], args="x", tags=3)),
        create(spec(resources=[1, {"type": {}}, {"type": "CPU", "count": "2"}], volumes=[1])),
        create(spec(placementPolicy="x", logging=5, devices=True)),
        {"type": "KILL", "sourceAppName": 1, "taskId": None, "opSpec": {"timeout": 5}},
        {"type": 7},
    ],
)
async def test_wrong_types_are_validation_errors(idle, body):
    assert await refused(idle, body)
