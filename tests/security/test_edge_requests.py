"""CPU per request, browsers and finished attempts' tokens (edge items 2, 3 and 5), for real.

Each test drives a real ``taskd serve`` over loopback and shows the attack fails while a real
client's requests keep answering (see ``edge.probing``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import sys

import aiohttp

from tests.processes.sundial import definition, shell
from tests.security.edge import ADMIN, probing, started
from tests.server import TOKEN

BASIC = {"Authorization": "Basic " + base64.b64encode(f"admin:{TOKEN}".encode()).decode()}


async def viewer_token(srv) -> dict[str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "taskd", "token", "create", "--db", str(srv.db), "--role",
        "viewer", "--name", "edge", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return {"Authorization": f"Bearer {out.decode().strip()}"}


def exploding_dag(a: int, b: int, c: int) -> dict:
    """A small body whose one task expands to a*b*c tasks."""
    params = {
        "A": [f"a{i}" for i in range(a)],
        "B": [f"b{i}" for i in range(b)],
        "C": [f"c{i}" for i in range(c)],
    }
    task = {"job": {"command": ["/bin/echo", "{{A}}", "{{B}}", "{{C}}"]}}
    return {"tag": "boom", "parameters": params, "tasks": {"t": task}}


async def test_a_viewer_cannot_make_taskd_expand_a_huge_dag(tmp_path):
    srv = await started(tmp_path)
    try:
        viewer = await viewer_token(srv)
        dag = exploding_dag(58, 57, 57)  # 188,442 tasks, under the hard bound of 200,000
        body = json.dumps(dag).encode()
        assert len(body) < 6000
        async with aiohttp.ClientSession() as http, probing(srv) as probe:

            async def attack() -> None:
                for _ in range(5):
                    async with http.post(f"{srv.url}/v1/dagrun/validate", data=body,
                                         headers={**viewer, "Content-Type": "application/json"}
                                         ) as resp:  # fmt: skip
                        reply = await resp.json()
                        assert resp.status == 400 and reply["valid"] is False, reply
                        assert "at most 10000 tasks" in reply["error"], reply

            await asyncio.gather(*(attack() for _ in range(4)))
            await asyncio.sleep(0.5)
        probe.check()
        # An admin may validate it: the expansion runs off the event loop.
        async with probing(srv) as probe:
            status, reply = await srv.request("POST", "/v1/dagrun/validate", json=dag)
            await asyncio.sleep(0.3)
        assert status == 200 and reply == {"valid": True}
        probe.check()
    finally:
        srv.stop()


CREATE = {
    "type": "CREATE",
    "spec": {
        "sourceAppName": "CSRF",
        "taskId": "T1",
        "executable": {"type": "DOCKER", "url": "taskd-test:latest", "dockerPullTimeout": "10s"},
        "resources": [{"type": "CPU", "count": 1}, {"type": "MEMORY", "sizeInMB": 64}],
        "args": ["sh", "-c", "echo hi"],
    },
    "opSpec": {"timeout": "5m", "parallelism": 1, "failureStrategy": "STOP"},
}


async def test_a_cross_site_form_post_cannot_use_a_browsers_cached_credentials(tmp_path):
    # One slot, which the DAG below takes: the Drove task queues and no container is made.
    srv = await started(tmp_path, "--max-parallel", "1")
    try:
        body = json.dumps(CREATE)
        dag = json.dumps({"tasks": {"t": {"job": {"command": ["/bin/sleep", "60"]}}}})
        async with aiohttp.ClientSession() as http, probing(srv) as probe:
            # What any web page can make a browser send, with the Basic password it cached.
            for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
                headers = {**BASIC, "Content-Type": kind}
                async with http.post(f"{srv.url}/apis/v1/tasks/operations", data=body,
                                     headers=headers) as resp:  # fmt: skip
                    reply = await resp.json()
                    assert resp.status == 415, reply
                    assert reply["status"] == "FAILED" and "application/json" in reply["message"]
                async with http.post(f"{srv.url}/v1/dagrun", data=dag, headers=headers) as resp:
                    assert resp.status == 401  # Basic is no credential outside Drove
                    assert not resp.headers["WWW-Authenticate"].startswith("Basic")
            async with http.get(f"{srv.url}/apis/v1/tasks", headers=BASIC) as resp:
                assert (await resp.json())["data"] == []
            async with http.get(f"{srv.url}/v1/dagruns?all=1", headers=ADMIN) as resp:
                assert await resp.json() == []
            # Drove's own clients send JSON as JSON; a Bearer token may come with any type
            # (no page can make a browser send one), as the seeds' curl examples do.
            headers = {**ADMIN, "Content-Type": "application/x-www-form-urlencoded"}
            async with http.post(f"{srv.url}/v1/dagrun", data=dag, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
            headers = {**BASIC, "Content-Type": "application/json"}
            async with http.post(f"{srv.url}/apis/v1/tasks/operations", data=body,
                                 headers=headers) as resp:  # fmt: skip
                assert resp.status == 200, await resp.text()
        probe.check()
    finally:
        srv.stop()


async def test_no_reply_invites_a_password_prompt_and_every_reply_has_security_headers(tmp_path):
    srv = await started(tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("/apis/v1/tasks", "/v1/dagruns", "/api/processes", "/project/list/x"):
                async with http.get(srv.url + path) as resp:
                    if resp.status == 401:
                        assert not resp.headers["WWW-Authenticate"].lower().startswith("basic")
            for path, headers in (("/ready", {}), ("/docs", {}), ("/nothing", {}),
                                  ("/api/processes", ADMIN), ("/api/processes", {})):  # fmt: skip
                async with http.get(srv.url + path, headers=headers) as resp:
                    h = resp.headers
                    assert h["X-Content-Type-Options"] == "nosniff", path
                    assert h["X-Frame-Options"] == "DENY", path
                    assert "frame-ancestors 'none'" in h["Content-Security-Policy"], path
                    assert h["Referrer-Policy"] == "no-referrer", path
                    assert h["Cache-Control"] == "no-store", path
    finally:
        srv.stop()


CALLBACK = """
import json, os, sys, urllib.request
base, tid, tok = os.environ["TASKD_URL"], os.environ["TASKD_TASK_ID"], os.environ["TASKD_TASK_TOKEN"]
req = urllib.request.Request(base + f"/api/tasks/{tid}/succeed", data=b"", method="POST",
                             headers={"Authorization": "Bearer " + tok})
assert urllib.request.urlopen(req).status == 204
open(sys.argv[1], "w").write(tid + " " + tok)
"""


async def test_a_finished_attempts_token_changes_nothing(tmp_path):
    # As root: the job writes its token into this test's private directory.
    srv = await started(tmp_path, "--local-user", "root")
    try:
        script = tmp_path / "callback.py"
        script.write_text(CALLBACK)
        kept = tmp_path / "kept"
        # The job reports success itself, then exits: its own callback, made while it ran.
        job = shell("t", f"{sys.executable} {script} {kept}", require_explicit_success=True)
        assert (await srv.request("PUT", "/api/process_definitions/p", json=definition("p", job)))[
            0
        ] == 200
        assert (await srv.request("POST", "/api/process_definitions/p/trigger"))[0] == 204
        found = None
        for _ in range(300):
            _, found = await srv.request("GET", "/api/processes?process_definition_name=p")
            if found and found[0]["status"] != "running":
                break
            await asyncio.sleep(0.05)
        assert found and found[0]["status"] == "succeeded", found
        task_id, token = kept.read_text().split()
        late = {"Authorization": f"Bearer {token}"}
        entry = [{"log_entry_id": "9a7d0f7e-7a4c-4b1e-9d59-3c1a2b3c4d5e",
                  "when": "2026-01-01T00:00:00Z", "source": "late", "message": "too late"}]  # fmt: skip
        async with aiohttp.ClientSession() as http, probing(srv) as probe:
            for path, body in (("fail", None), ("log_entries", entry), ("succeed", None)):
                async with http.post(f"{srv.url}/api/tasks/{task_id}/{path}", json=body,
                                     headers=late) as resp:  # fmt: skip
                    reply = await resp.json()
                    assert resp.status == 401, (path, reply)
                    assert reply["code"] == "unauthorized" and "finished" in reply["message"]
        probe.check()
        _, found = await srv.request("GET", "/api/processes?process_definition_name=p")
        assert found[0]["status"] == "succeeded"
        assert found[0]["task"][0]["log_entries"] == []
        db = sqlite3.connect(f"file:{srv.db}?mode=ro", uri=True)
        assert db.execute("SELECT reported FROM attempts").fetchall() == [("succeeded",)]
        db.close()
    finally:
        srv.stop()


async def test_with_daggy_anonymous_a_web_page_still_cannot_submit_a_dag(tmp_path):
    srv = await started(tmp_path, "--daggy-anonymous")
    try:
        dag = json.dumps({"tasks": {"t": {"job": {"command": ["/bin/true"]}}}})
        async with aiohttp.ClientSession() as http, probing(srv) as probe:
            for kind in ("text/plain", "application/x-www-form-urlencoded", None):
                headers = {"Content-Type": kind} if kind else {}
                # aiohttp would name bytes application/octet-stream; a browser's blob sends none
                async with http.post(f"{srv.url}/v1/dagrun", data=dag.encode(),
                                     headers=headers, skip_auto_headers=["Content-Type"],
                                     ) as resp:  # fmt: skip
                    reply = await resp.json()
                    assert resp.status == 415, (kind, reply)
                    assert "application/json" in reply["error"]
            async with http.get(f"{srv.url}/v1/dagruns?all=1") as resp:
                assert await resp.json() == []
            # Daggy's clients, which send JSON as JSON, are served as before.
            async with http.post(f"{srv.url}/v1/dagrun", data=dag,
                                 headers={"Content-Type": "application/json"}) as resp:  # fmt: skip
                assert resp.status == 200, await resp.text()
        probe.check()
    finally:
        srv.stop()
