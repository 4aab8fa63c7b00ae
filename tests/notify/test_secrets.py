"""Secrets reach jobs and nowhere else: not replies, logs, captured output, or the file."""

from __future__ import annotations

import codecs
import os
import stat
import uuid

import pytest

from tests.notify.receivers import until
from tests.server import Server

VALUE = "hunter2-Sup3r-s3cret"
# Jobs check the value by its ROT13 form: a literal value in the definition would be a leak
# the test itself made.
CHECK = (
    '"$(printf %s "$DB_PASSWORD" | tr a-zA-Z n-za-mN-ZA-M)" = "'
    + codecs.encode(VALUE, "rot13")
    + '"'
)


def sundial(name: str, executable: dict) -> dict:
    return {"process_definition_name": name,
            "task_definitions": [{"task_definition_name": "main", "executable": executable}]}  # fmt: skip


async def finished(srv: Server, name: str) -> dict:
    async def done():
        _, found = await srv.request("GET", "/api/processes/",
                                     params={"process_definition_name": name})  # fmt: skip
        return found and found[0]["status"] != "running" and found[0]

    return await until(done, within=60)


# Prints the value in two pieces (a value split across writes must still be masked), checks
# it is the real value, and posts it as Sundial metadata.
SCRIPT = (
    'printf "pw=%s\\n" "$DB_PASSWORD"; printf "split=hunter2-Sup"; sleep 0.5; printf "3r-s3cret\\n";'
    ' echo "**metadata:pw=$DB_PASSWORD"; test ' + CHECK
)


async def everything_readable(srv: Server, process_id: str) -> str:
    texts = []
    for path in ("/api/process_definitions/withsecret", f"/api/processes/{process_id}",
                 "/api/tasks/?process_definition_name=withsecret", "/api/secrets",
                 "/api/secrets/db", "/v1/dagruns", "/apis/v1/tasks"):  # fmt: skip
        _, body = await srv.request("GET", path)
        texts.append(str(body))
    _, proc = await srv.request("GET", f"/api/processes/{process_id}")
    for task in proc["task"]:
        _, body = await srv.request("GET", f"/api/tasks/{task['task_id']}/logs")
        texts.append(str(body))
    return "\n".join(texts)


async def test_a_secret_reaches_a_local_job_and_is_masked_everywhere(tmp_path):
    srv = Server(tmp_path)
    try:
        await srv.start()
        status, body = await srv.request("PUT", "/api/secrets/db", json={"value": VALUE})
        assert status == 201 and "value" not in body
        status, body = await srv.request("PUT", "/api/secrets/db", json={"value": VALUE})
        assert status == 200  # replaced
        status, body = await srv.request("PUT", "/api/secrets/db", json={"value": 3})
        assert status == 400
        key = srv.db.with_name("taskd.db.key")
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600

        exe = {"shell_script_command": {"script": SCRIPT, "environment_variables": [
            {"variable_name": "DB_PASSWORD", "value": {"secret": "db"}}]}}  # fmt: skip
        status, body = await srv.request("PUT", "/api/process_definitions/withsecret",
                                         json=sundial("withsecret", exe))  # fmt: skip
        assert status == 200, body
        await srv.request("POST", "/api/process_definitions/withsecret/trigger")
        proc = await finished(srv, "withsecret")
        assert proc["status"] == "succeeded"  # the job saw the real value

        # What a job posts (log entries, metadata) is masked as it is stored.
        task_id = proc["task"][0]["task_id"]
        for kind, fields in (
            ("log_entries", {"source": "job", "message": f"connect {VALUE}"}),
            ("metadata", {"key": "dsn", "value": f"pg://u:{VALUE}@db"}),
        ):
            id_key = "log_entry_id" if kind == "log_entries" else "metadata_entry_id"
            entry = {id_key: str(uuid.uuid4()), "when": "2026-01-01T00:00:00.000Z", **fields}
            status, body = await srv.request("POST", f"/api/tasks/{task_id}/{kind}", json=[entry])
            assert status == 204, body
        seen = await everything_readable(srv, proc["process_id"])
        assert "connect " + "*" * len(VALUE) in seen
        assert "pg://u:" + "*" * len(VALUE) + "@db" in seen
        assert VALUE not in seen
        assert "pw=" + "*" * len(VALUE) in seen  # masked, not dropped
        assert "split=" + "*" * len(VALUE) in seen
        assert '"secret": "db"' in seen or "'secret': 'db'" in seen  # the reference is shown
        srv.terminate()
        assert VALUE not in srv.log()
        for path in tmp_path.glob("taskd.db*"):
            if path.name != "taskd.db.key":
                assert VALUE.encode() not in path.read_bytes(), path.name
        await srv.start()  # the value survives a restart (read back from the sealed row)
        await srv.request("POST", "/api/process_definitions/withsecret/trigger")

        async def second():
            _, found = await srv.request("GET", "/api/processes/",
                                         params={"process_definition_name": "withsecret"})  # fmt: skip
            return len(found) == 2 and found[0]["status"] != "running" and found[0]

        assert (await until(second, within=60))["status"] == "succeeded"
    finally:
        srv.stop()


async def test_a_missing_secret_fails_the_attempt_with_a_reason(tmp_path):
    srv = Server(tmp_path)
    try:
        await srv.start()
        exe = {"shell_script_command": {"script": "true", "environment_variables": [
            {"variable_name": "X", "value": {"secret": "nope"}}]}}  # fmt: skip
        await srv.request(
            "PUT", "/api/process_definitions/withsecret", json=sundial("withsecret", exe)
        )
        await srv.request("POST", "/api/process_definitions/withsecret/trigger")
        proc = await finished(srv, "withsecret")
        assert proc["status"] == "failed"
        status, body = await srv.request("PUT", "/api/process_definitions/bad",
                                         json=sundial("bad", {"shell_script_command": {
                                             "script": "true", "environment_variables": [
                                                 {"variable_name": "X", "value": {"oops": 1}}]}}))  # fmt: skip
        assert status == 400 and "secret" in str(body)
    finally:
        srv.stop()


async def test_a_daggy_job_gets_a_secret_by_reference(tmp_path):
    srv = Server(tmp_path)
    try:
        await srv.start()
        await srv.request("PUT", "/api/secrets/db", json={"value": VALUE})
        dag = {"tasks": {"t": {"job": {
            "command": ["/bin/sh", "-c", f'echo "got $DB_PASSWORD"; test {CHECK}'],
            "environment": [{"name": "DB_PASSWORD", "secret": "db"}]}}}}  # fmt: skip
        status, body = await srv.request("POST", "/v1/dagrun", json=dag)
        assert status == 200, body
        run_id = body["runID"]

        async def done():
            _, run = await srv.request("GET", f"/v1/dagrun/{run_id}")
            return run["taskStates"]["t"] in ("COMPLETED", "ERRORED") and run

        run = await until(done, within=60)
        assert run["taskStates"]["t"] == "COMPLETED"
        assert VALUE not in str(run)
        assert "got " + "*" * len(VALUE) in str(run)
    finally:
        srv.stop()


@pytest.mark.docker
async def test_a_secret_reaches_a_container_and_is_masked(tmp_path):
    from tests.dockerutil import docker_available, ensure_test_image

    if not docker_available():
        if os.environ.get("TASKD_REQUIRE_DOCKER") == "1":
            pytest.fail("TASKD_REQUIRE_DOCKER=1 but no Docker engine is reachable")
        pytest.skip("no Docker engine")
    ensure_test_image()
    srv = Server(tmp_path)
    try:
        await srv.start()
        await srv.request("PUT", "/api/secrets/db", json={"value": VALUE})
        spec = {
            "type": "CREATE",
            "spec": {
                "sourceAppName": "APP", "taskId": "SECRET",
                "executable": {"type": "DOCKER", "url": "taskd-test:latest",
                               "dockerPullTimeout": "100 seconds"},
                "resources": [{"type": "CPU", "count": 1}, {"type": "MEMORY", "sizeInMB": 64}],
                "args": ["sh", "-c", f'echo "pw=$DB_PASSWORD"; test {CHECK}'],
                "env": {"DB_PASSWORD": {"secret": "db"}},
            },
            "opSpec": {"timeout": "5m"},
        }  # fmt: skip
        status, body = await srv.request("POST", "/apis/v1/tasks/operations", json=spec)
        assert status == 200, body

        async def done():
            _, found = await srv.request("GET", "/apis/v1/tasks/APP/instances/SECRET")
            return found["data"]["state"] == "STOPPED" and found["data"]

        info = await until(done, within=90)
        assert info["taskResult"]["status"] == "SUCCESSFUL", info
        assert VALUE not in str(info)
        _, out = await srv.request("GET", "/apis/v1/logfiles/tasks/APP/SECRET/download/output.log")
        assert out == "pw=" + "*" * len(VALUE) + "\n"
    finally:
        srv.stop()


async def test_a_missing_or_wrong_key_refuses_the_start_with_a_clear_message(tmp_path):
    srv = Server(tmp_path)
    try:
        await srv.start()
        await srv.request("PUT", "/api/secrets/db", json={"value": VALUE})
        srv.terminate()
        key = tmp_path / "taskd.db.key"
        original = key.read_bytes()
        key.unlink()
        with pytest.raises(RuntimeError, match="is missing"):
            await srv.start()
        assert not key.exists()  # no new key made that could open nothing
        key.write_text("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
        os.chmod(key, 0o600)
        with pytest.raises(RuntimeError, match="cannot be opened"):
            await srv.start()
        key.write_bytes(original)
        await srv.start()
        status, body = await srv.request("GET", "/api/secrets/db")
        assert status == 200 and body["name"] == "db"
    finally:
        srv.stop()
