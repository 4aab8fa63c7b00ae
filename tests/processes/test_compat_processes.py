"""Compatibility with Sundial: every example of the seed's processes document replayed against
taskd and checked field by field, and the shell task's stdout conventions (status, metadata and
log lines) as Sundial's shell executor applies them.

No Sundial client is published on a package registry; its clients are generated from the
API Builder spec, so the seed document's routes and shapes are what a client relies on.
"""

from __future__ import annotations

import re
import uuid

from tests.processes.sundial import H, definition, finished_process, put, shell, trigger

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PROCESS_KEYS = {"process_id", "process_definition_name", "start_time", "end_time", "status", "task"}
TASK_KEYS = {
    "task_id",
    "process_id",
    "process_definition_name",
    "task_definition_name",
    "start_time",
    "end_time",
    "previous_attempt_count",
    "log_entries",
    "metadata_entries",
    "status",
}


def the_task(process: dict, name: str) -> dict:
    (task,) = [t for t in process["task"] if t["task_definition_name"] == name]
    return task


# -- stdout conventions ---------------------------------------------------------------------


async def test_shell_stdout_lines_become_log_entries_metadata_and_status(make_client):
    client = await make_client()
    script = (
        "echo first line; echo '**metadata:rows=42'; echo '**metadata:url=http://x/?a=b';"
        " printf 'no newline at the end\\n**status=success'"
    )
    await put(client, definition("conv", shell("t", script, require_explicit_success=True)))
    await trigger(client, "conv")
    (process,) = await finished_process(client, "conv")
    task = the_task(process, "t")
    # require_explicit_success: only the printed **status=success makes it succeed.
    assert process["status"] == "succeeded" and task["status"] == "succeeded"
    shell_logs = [e for e in task["log_entries"] if e["source"] == "shell"]
    assert [e["message"] for e in shell_logs] == [
        "[stdout] first line",
        "[stdout] no newline at the end",
    ]
    for entry in shell_logs:
        assert set(entry) == {"log_entry_id", "when", "source", "message"}
        assert uuid.UUID(entry["log_entry_id"]) and ISO_MS.match(entry["when"])
    meta = {e["key"]: e["value"] for e in task["metadata_entries"]}
    assert meta == {"rows": "42", "url": "http://x/?a=b"}  # split at the first "="
    for entry in task["metadata_entries"]:
        assert set(entry) == {"metadata_entry_id", "when", "key", "value"}
        assert uuid.UUID(entry["metadata_entry_id"]) and ISO_MS.match(entry["when"])
    # The raw output stays readable too.
    resp = await client.get(f"/api/tasks/{task['task_id']}/logs", headers=H)
    assert "**metadata:rows=42" in await resp.text()


async def test_printed_failure_fails_a_task_that_exits_zero(make_client):
    client = await make_client()
    await put(client, definition("convfail", shell("t", "echo '**status=failure'; exit 0")))
    await trigger(client, "convfail")
    (process,) = await finished_process(client, "convfail")
    assert process["status"] == "failed" and the_task(process, "t")["status"] == "failed"
    # A status line is a report, not a log line.
    assert not [e for e in the_task(process, "t")["log_entries"] if e["source"] == "shell"]


async def test_first_printed_status_wins(make_client):
    client = await make_client()
    script = "echo '**status=success'; echo '**status=failure'"
    await put(client, definition("convfirst", shell("t", script, require_explicit_success=True)))
    await trigger(client, "convfirst")
    (process,) = await finished_process(client, "convfirst")
    assert the_task(process, "t")["status"] == "succeeded"


async def test_explicit_success_without_a_status_line_fails(make_client):
    client = await make_client()
    await put(
        client, definition("convnone", shell("t", "echo done", require_explicit_success=True))
    )
    await trigger(client, "convnone")
    (process,) = await finished_process(client, "convnone")
    task = the_task(process, "t")
    assert task["status"] == "failed"
    assert [e["message"] for e in task["log_entries"] if e["source"] == "shell"] == [
        "[stdout] done"
    ]


async def test_stdout_conventions_are_bounded(make_client):
    from taskd import shell_conventions

    client = await make_client()
    old = shell_conventions.MAX_ENTRIES
    shell_conventions.MAX_ENTRIES = 50
    try:
        await put(client, definition("convmany", shell("t", "seq 1 500")))
        await trigger(client, "convmany")
        (process,) = await finished_process(client, "convmany")
    finally:
        shell_conventions.MAX_ENTRIES = old
    logs = the_task(process, "t")["log_entries"]
    shell_logs = [e for e in logs if e["source"] == "shell"]
    assert len(shell_logs) == 50 and shell_logs[-1]["message"] == "[stdout] 50"
    assert any("more than 50 lines" in e["message"] for e in logs if e["source"] == "taskd")


async def test_shell_tasks_get_sundials_previous_attempts_variable(make_client):
    client = await make_client()
    script = 'echo "$SUNDIAL_TASK_PREVIOUS_ATTEMPTS"; exit 1'
    await put(client, definition("convenv", shell("t", script, max_attempts=2)))
    await trigger(client, "convenv")
    (process,) = await finished_process(client, "convenv")
    printed = sorted(
        (t["previous_attempt_count"], e["message"])
        for t in process["task"]
        for e in t["log_entries"]
        if e["source"] == "shell"
    )
    assert printed == [(0, "[stdout] 0"), (1, "[stdout] 1")]


# -- the seed document's routes, replayed ---------------------------------------------------


async def test_seed_document_routes_field_by_field(make_client):
    client = await make_client()
    name = "seed"
    doc = definition(
        name,
        shell("a", "echo hi"),
        shell("b", "echo '**metadata:k=v'", deps=["a"]),
        schedule={
            "cron_schedule": {
                "minutes": "0",
                "hours": "3",
                "day_of_month": "*",
                "month": "*",
                "day_of_week": "?",
            }
        },
        overlap_action="wait",
    )
    # PUT /api/process_definitions/:name -> 200 process_definition
    stored = await put(client, doc)
    assert stored["process_definition_name"] == name and stored["paused"] is False
    assert [t["task_definition_name"] for t in stored["task_definitions"]] == ["a", "b"]
    # GET /api/process_definitions/ and /:name
    resp = await client.get("/api/process_definitions/", headers=H)
    assert resp.status == 200 and [d["process_definition_name"] for d in await resp.json()] == [
        name
    ]
    resp = await client.get(f"/api/process_definitions/{name}", headers=H)
    assert resp.status == 200 and (await resp.json()) == stored
    # pause / resume -> 204
    for verb, paused in (("pause", True), ("resume", False)):
        resp = await client.post(f"/api/process_definitions/{name}/{verb}", headers=H)
        assert resp.status == 204
        got = await (await client.get(f"/api/process_definitions/{name}", headers=H)).json()
        assert got["paused"] is paused
    # trigger -> 204, then the process and its tasks
    await trigger(client, name)
    (process,) = await finished_process(client, name)
    assert set(process) >= PROCESS_KEYS and process["status"] == "succeeded"
    assert ISO_MS.match(process["start_time"]) and uuid.UUID(process["process_id"])
    for task in process["task"]:
        assert set(task) >= TASK_KEYS and task["status"] == "succeeded"
        assert task["process_id"] == process["process_id"]
        assert task["previous_attempt_count"] == 0
    # GET /api/processes/:id
    resp = await client.get(f"/api/processes/{process['process_id']}", headers=H)
    assert resp.status == 200 and (await resp.json())["process_id"] == process["process_id"]
    # GET /api/processes/ with every query parameter of the seed
    params = [
        ("process_definition_name", name),
        ("start_time", "2000-01-01T00:00:00.000Z"),
        ("end_time", "2999-01-01T00:00:00.000Z"),
        ("max_records", "5"),
        ("allowed_statuses", "succeeded"),
        ("allowed_statuses", "failed"),
    ]
    resp = await client.get("/api/processes/", params=params, headers=H)
    assert resp.status == 200 and [p["process_id"] for p in await resp.json()] == [
        process["process_id"]
    ]
    # GET /api/tasks/ with the seed's required parameters
    params = [
        ("process_definition_name", name),
        ("task_definition_name", "b"),
        ("allowed_statuses", "succeeded"),
        ("limit", "10"),
    ]
    resp = await client.get("/api/tasks/", params=params, headers=H)
    tasks = await resp.json()
    assert resp.status == 200 and [t["task_definition_name"] for t in tasks] == ["b"]
    assert {e["key"]: e["value"] for e in tasks[0]["metadata_entries"]} == {"k": "v"}
    task_id = tasks[0]["task_id"]
    # POST log_entries / metadata / succeed / fail -> 204
    when = "2024-01-02T03:04:05.678Z"
    log_id, meta_id = str(uuid.uuid4()), str(uuid.uuid4())
    resp = await client.post(
        f"/api/tasks/{task_id}/log_entries",
        headers=H,
        json=[{"log_entry_id": log_id, "when": when, "source": "client", "message": "m"}],
    )
    assert resp.status == 204
    resp = await client.post(
        f"/api/tasks/{task_id}/metadata",
        headers=H,
        json=[{"metadata_entry_id": meta_id, "when": when, "key": "k2", "value": "v2"}],
    )
    assert resp.status == 204
    for verb in ("succeed", "fail"):
        assert (await client.post(f"/api/tasks/{task_id}/{verb}", headers=H)).status == 204
    got = await (await client.get(f"/api/processes/{process['process_id']}", headers=H)).json()
    b = the_task(got, "b")
    assert {"log_entry_id": log_id, "when": when, "source": "client", "message": "m"} in b[
        "log_entries"
    ]
    assert {"metadata_entry_id": meta_id, "when": when, "key": "k2", "value": "v2"} in b[
        "metadata_entries"
    ]
    # retry of a succeeded process: 400; kill: 204
    resp = await client.post(f"/api/processes/{process['process_id']}/retry", headers=H)
    assert resp.status == 400
    resp = await client.post(f"/api/processes/{process['process_id']}/kill", headers=H)
    assert resp.status == 204
    # /_internal_/metrics -> 200 text
    resp = await client.get("/_internal_/metrics", headers=H)
    assert resp.status == 200 and resp.content_type == "text/plain"
    # DELETE -> 204, then 404
    assert (await client.delete(f"/api/process_definitions/{name}", headers=H)).status == 204
    resp = await client.get(f"/api/process_definitions/{name}", headers=H)
    assert resp.status == 404


async def test_retry_of_a_failed_process_gives_one_more_attempt(make_client):
    client = await make_client()
    await put(client, definition("seedretry", shell("t", "exit 3")))
    await trigger(client, "seedretry")
    (process,) = await finished_process(client, "seedretry")
    assert process["status"] == "failed"
    resp = await client.post(f"/api/processes/{process['process_id']}/retry", headers=H)
    assert resp.status == 204
    (process,) = await finished_process(client, "seedretry")
    attempts = sorted(t["previous_attempt_count"] for t in process["task"])
    assert process["status"] == "failed" and attempts == [0, 1]
