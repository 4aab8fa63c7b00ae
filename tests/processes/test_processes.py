"""The processes API (Sundial) over real HTTP and SQLite, with local shell tasks."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.processes.sundial import (
    H,
    definition,
    finished_process,
    processes,
    put,
    shell,
    trigger,
    wait_for,
)


async def test_definition_round_trip_and_versions(make_client):
    client = await make_client()
    doc = definition("etl", shell("a", "true"), shell("b", "true", deps=["a"]),
                     process_description="nightly")  # fmt: skip
    stored = await put(client, doc)
    assert stored["version"] == 1 and stored["overlap_action"] == "wait"
    assert stored["task_definitions"][1]["dependencies"] == [
        {"task_definition_name": "a", "success_required": True}
    ]
    stored = await put(client, doc)
    assert stored["version"] == 2
    resp = await client.get("/api/process_definitions/etl", headers=H)
    assert (await resp.json())["process_description"] == "nightly"
    resp = await client.get("/api/process_definitions/", headers=H)
    assert [d["process_definition_name"] for d in await resp.json()] == ["etl"]
    resp = await client.delete("/api/process_definitions/etl", headers=H)
    assert resp.status == 204
    resp = await client.get("/api/process_definitions/etl", headers=H)
    assert resp.status == 404
    assert "etl" in (await resp.json())["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"process_definition_name": "x", "task_definitions": [
            {"task_definition_name": "a", "dependencies": [{"task_definition_name": "b"}],
             "executable": {"shell_script_command": {"script": "true"}}},
            {"task_definition_name": "b", "dependencies": [{"task_definition_name": "a"}],
             "executable": {"shell_script_command": {"script": "true"}}}]}, "cycle"),
        ({"process_definition_name": "x", "task_definitions": [
            {"task_definition_name": "a", "dependencies": [{"task_definition_name": "zz"}],
             "executable": {"shell_script_command": {"script": "true"}}}]}, "zz"),
        ({"process_definition_name": "x", "task_definitions": [
            {"task_definition_name": "a", "max_attempts": "three",
             "executable": {"shell_script_command": {"script": "true"}}}]}, "max_attempts"),
        ({"process_definition_name": "x", "task_definitions": [
            {"task_definition_name": "a", "executable": {"fancy_command": {}}}]}, "executable"),
        ({"process_definition_name": "other", "task_definitions": []}, "does not match"),
        ({"process_definition_name": "x", "task_definitions": [], "schedule": {
            "cron_schedule": {"minutes": "61", "hours": "*", "day_of_month": "*", "month": "*",
                              "day_of_week": "*"}}}, "minutes"),
        ({"process_definition_name": "x", "overlap_action": "sometimes",
          "task_definitions": []}, "overlap_action"),
        ([1, 2], "object"),
    ],
)  # fmt: skip
async def test_bad_definitions_are_refused_with_a_clear_400(make_client, body, fragment):
    client = await make_client()
    resp = await client.put("/api/process_definitions/x", json=body, headers=H)
    assert resp.status == 400, await resp.text()
    payload = await resp.json()
    text = payload["message"] + " ".join(payload.get("errors", []))
    assert fragment in text


async def test_malformed_json_is_400_not_500(make_client):
    client = await make_client()
    resp = await client.put("/api/process_definitions/x", data=b"{nope", headers=H)
    assert resp.status == 400
    assert "JSON" in (await resp.json())["message"]


async def test_mutations_without_credentials_are_401(make_client):
    client = await make_client()
    doc = definition("p", shell("a", "true"))
    calls = [
        ("PUT", "/api/process_definitions/p", doc),
        ("DELETE", "/api/process_definitions/p", None),
        ("POST", "/api/process_definitions/p/trigger", None),
        ("POST", "/api/process_definitions/p/pause", None),
        ("POST", "/api/process_definitions/p/resume", None),
        ("POST", f"/api/processes/{uuid.uuid4()}/retry", None),
        ("POST", f"/api/processes/{uuid.uuid4()}/kill", None),
        ("POST", f"/api/tasks/{uuid.uuid4()}/succeed", None),
        ("POST", f"/api/tasks/{uuid.uuid4()}/fail", None),
        ("POST", f"/api/tasks/{uuid.uuid4()}/log_entries", []),
        ("POST", f"/api/tasks/{uuid.uuid4()}/metadata", []),
    ]
    for method, path, body in calls:
        resp = await client.request(method, path, json=body)
        assert resp.status == 401, (method, path)
        resp = await client.request(method, path, json=body,
                                    headers={"Authorization": "Bearer wrong"})  # fmt: skip
        assert resp.status == 401, (method, path)
    resp = await client.get("/api/process_definitions/", headers=H)
    assert await resp.json() == []  # nothing was created


async def test_process_runs_dependent_tasks_and_records_attempts(make_client):
    client = await make_client()
    await put(client, definition("p", shell("a", "echo from-a"), shell("b", "exit 4", deps=["a"])))
    await trigger(client, "p")
    [proc] = await finished_process(client, "p")
    assert proc["status"] == "failed"
    tasks = {t["task_definition_name"]: t for t in proc["task"]}
    assert tasks["a"]["status"] == "succeeded" and tasks["a"]["exit_code"] == 0
    assert tasks["b"]["status"] == "failed" and tasks["b"]["exit_code"] == 4
    assert tasks["b"]["previous_attempt_count"] == 0
    resp = await client.get(f"/api/tasks/{tasks['a']['task_id']}/logs?stream=stdout", headers=H)
    assert await resp.text() == "from-a\n"
    resp = await client.get(f"/api/processes/{proc['process_id']}", headers=H)
    assert (await resp.json())["process_id"] == proc["process_id"]


async def test_retry_adds_one_attempt_to_failed_tasks_only(make_client, tmp_path):
    client = await make_client()
    flag = tmp_path / "ok"
    await put(client, definition(
        "p", shell("a", "echo a"), shell("b", f"test -e {flag}", deps=["a"]),
        shell("c", "echo c", deps=["b"]),
    ))  # fmt: skip
    await trigger(client, "p")
    [proc] = await finished_process(client, "p")
    assert proc["status"] == "failed"
    assert sorted(t["task_definition_name"] for t in proc["task"]) == ["a", "b"]
    flag.write_text("")
    resp = await client.post(f"/api/processes/{proc['process_id']}/retry", headers=H)
    assert resp.status == 204
    [proc] = await finished_process(client, "p")
    assert proc["status"] == "succeeded"
    names = [t["task_definition_name"] for t in proc["task"]]
    assert sorted(names) == ["a", "b", "b", "c"]
    resp = await client.post(f"/api/processes/{proc['process_id']}/retry", headers=H)
    assert resp.status == 400


async def test_unknown_process_and_task_ids_are_404_and_bad_ids_400(make_client):
    client = await make_client()
    for path in (f"/api/processes/{uuid.uuid4()}", f"/api/tasks/{uuid.uuid4()}/logs"):
        resp = await client.get(path, headers=H)
        assert resp.status == 404
    resp = await client.post(f"/api/processes/{uuid.uuid4()}/kill", headers=H)
    assert resp.status == 404
    resp = await client.get("/api/processes/not-a-uuid", headers=H)
    assert resp.status == 400
    resp = await client.post("/api/process_definitions/nope/trigger", headers=H)
    assert resp.status == 404
    resp = await client.get("/api/processes/?allowed_statuses=weird", headers=H)
    assert resp.status == 400
    resp = await client.get("/api/processes/?start_time=yesterday", headers=H)
    assert resp.status == 400


async def test_trigger_of_one_task_runs_only_that_task(make_client):
    client = await make_client()
    await put(client, definition("p", shell("a", "true"), shell("b", "true", deps=["a"])))
    await trigger(client, "p", task="b")
    [proc] = await finished_process(client, "p")
    assert [t["task_definition_name"] for t in proc["task"]] == ["b"]
    resp = await client.post("/api/process_definitions/p/trigger?task_definition_name=zz",
                             headers=H)  # fmt: skip
    assert resp.status == 400


async def test_process_filters(make_client):
    client = await make_client()
    await put(client, definition("good", shell("a", "true")))
    await put(client, definition("bad", shell("a", "false")))
    await trigger(client, "good")
    await trigger(client, "bad")
    await finished_process(client, "good")
    await finished_process(client, "bad")
    assert [p["status"] for p in await processes(client, allowed_statuses="failed")] == ["failed"]
    both = await processes(client, allowed_statuses=["failed", "succeeded"])
    assert len(both) == 2
    assert len(await processes(client, max_records=1)) == 1
    assert await processes(client, start_time="2999-01-01T00:00:00Z") == []
    assert len(await processes(client, end_time="2999-01-01T00:00:00.000Z")) == 2
    resp = await client.get(
        "/api/tasks",
        params={"process_definition_name": "bad", "allowed_statuses": "failed"},
        headers=H,
    )
    found = await resp.json()
    assert [t["process_definition_name"] for t in found] == ["bad"]
    resp = await client.get(
        "/api/tasks",
        params={
            "process_definition_name": "good",
            "task_definition_name": "a",
            "allowed_statuses": "failed",
        },
        headers=H,
    )
    assert await resp.json() == []


async def test_kill_ends_a_running_process_failed(make_client):
    client = await make_client()
    await put(
        client, definition("p", shell("slow", "sleep 60"), shell("next", "true", deps=["slow"]))
    )
    await trigger(client, "p")

    async def running():
        found = await processes(client, "p")
        return found and found[0]["task"] and found[0]

    proc = await wait_for(running)
    t0 = time.monotonic()
    resp = await client.post(f"/api/processes/{proc['process_id']}/kill", headers=H)
    assert resp.status == 204
    [proc] = await finished_process(client, "p", within=10)
    assert time.monotonic() - t0 < 5
    assert proc["status"] == "failed" and proc["killed"]
    assert [t["task_definition_name"] for t in proc["task"]] == ["slow"]


async def test_require_explicit_success(make_client):
    client = await make_client()
    await put(client, definition(
        "p",
        shell("silent", "exit 0", require_explicit_success=True),
        shell("reports", 'wget -q -O- 2>/dev/null; true', require_explicit_success=True),
    ))  # fmt: skip
    await trigger(client, "p", task="silent")
    [proc] = await finished_process(client, "p")
    [task] = proc["task"]
    assert task["status"] == "failed"
    assert "did not report success" in task["reason"]


async def test_metrics_are_prometheus_text(make_client):
    client = await make_client()
    await put(client, definition("p", shell("a", "true")))
    await trigger(client, "p")
    await finished_process(client, "p")
    resp = await client.get("/_internal_/metrics", headers=H)
    text = await resp.text()
    assert resp.content_type == "text/plain"
    assert 'taskd_runs{kind="process",state="succeeded"} 1.0' in text
    assert "taskd_attempt_duration_seconds_count" in text
    await put(client, definition("slow", shell("a", "sleep 30")))
    await trigger(client, "slow")

    async def running():
        resp = await client.get("/_internal_/metrics", headers=H)
        text = await resp.text()
        return 'taskd_tasks{state="running"} 1.0' in text and text

    text = await wait_for(running)
    assert 'state="succeeded"' not in text.split("# HELP taskd_tasks ")[1].split("# HELP")[0]
    assert "taskd_attempt_duration_seconds_bucket" in text
    assert "taskd_queue_depth" in text
