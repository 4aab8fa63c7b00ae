"""Secrets (SPEC §5): the admin token, viewer tokens, task tokens and worker secrets appear in
no API reply, in no line of the server's log and in no byte of the database; taskd refuses to
listen beyond loopback without credentials, and refuses a blank admin token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.processes.sundial import definition, shell, wait_for
from tests.server import TOKEN, Server, free_port

PROBE = """
import json, os, sys, urllib.request
base, tid, tok = os.environ["TASKD_URL"], os.environ["TASKD_TASK_ID"], os.environ["TASKD_TASK_TOKEN"]
def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": "Bearer " + tok})
    try:
        return urllib.request.urlopen(req).status
    except urllib.error.HTTPError as e:
        return e.code
when = "2026-01-01T00:00:00Z"
assert call("POST", f"/api/tasks/{tid}/log_entries", [{"log_entry_id": "9a7d0f7e-7a4c-4b1e-9d59-3c1a2b3c4d5e", "when": when, "source": "probe", "message": "hello"}]) == 204
assert call("POST", f"/api/tasks/{tid}/metadata", [{"metadata_entry_id": "8a7d0f7e-7a4c-4b1e-9d59-3c1a2b3c4d5e", "when": when, "key": "k", "value": "v"}]) == 204
assert call("PUT", "/api/process_definitions/evil", {}) == 403
assert call("POST", f"/api/tasks/{tid}/succeed") == 204
open(sys.argv[1], "w").write(tok)  # for the test to look for; taskd never sees this file
print("probe done")
"""


async def test_secrets_never_reach_api_output_logs_or_the_database(tmp_path):
    """A real server: every credential is used, then looked for in every reply, the log and
    every byte of the database files."""
    # The probe job reads and writes in the test's private directory, which only root may enter.
    srv = Server(tmp_path, "--log-level", "debug", "--local-user", "root")
    await srv.start()
    try:
        secrets_, replies = await exercise_credentials(srv, tmp_path)
    finally:
        srv.terminate()
    log = srv.log().encode()
    assert b"run started" in log  # positive controls: this is the server's log ...
    files = [p for p in tmp_path.iterdir() if p.name.startswith(srv.db.name)
             and not p.name.endswith(".token")]  # fmt: skip
    database = b"".join(p.read_bytes() for p in files)
    assert b"probe done" in database  # ... and these bytes hold what the jobs printed
    for name, secret in secrets_.items():
        for form in forms(secret):
            assert form not in replies, f"{name} in an API reply"
            assert form not in log, f"{name} in the server's log"
            assert form not in database, f"{name} in the database file"


def forms(secret: str) -> list[bytes]:
    """A secret as text, and (for base64 worker secrets) as the raw bytes and unpadded."""
    found = [secret.encode()]
    if secret.endswith("="):
        found += [base64.b64decode(secret), secret.rstrip("=").encode()]
    if "." in secret:  # a task token: the part after the attempt uuid is the secret
        found.append(secret.partition(".")[2].encode())
    return found


async def exercise_credentials(srv: Server, tmp_path: Path) -> tuple[dict[str, str], bytes]:
    """Use every kind of credential (and some wrong ones); the secrets and every reply."""
    replies = bytearray()
    viewer = subprocess.run(
        [sys.executable, "-m", "taskd", "token", "create", "--db", str(srv.db), "--name", "sec"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout.strip()  # fmt: skip
    decoy = "decoy-" + secrets.token_urlsafe(16)
    admin = {"Authorization": f"Bearer {TOKEN}"}
    admin_basic = {"Authorization": "Basic " + base64.b64encode(f"admin:{TOKEN}".encode()).decode()}
    viewer_h = {"Authorization": f"Bearer {viewer}"}
    viewer_basic = {"Authorization": "Basic " + base64.b64encode(f"x:{viewer}".encode()).decode()}

    async with aiohttp.ClientSession(base_url=srv.url) as http:

        async def req(method, path, headers, keep=True, **kw):
            async with http.request(method, path, headers=headers, **kw) as resp:
                body = await resp.read()
                if keep:
                    replies.extend(body + b"\n" + str(dict(resp.headers)).encode())
                return resp.status, body

        probe = tmp_path / "probe.py"
        probe.write_text(PROBE)
        (tmp_path / "kept").mkdir()
        command = f"{sys.executable} {probe} {tmp_path / 'kept' / 'task-token'}"
        doc = definition("p", shell("probe", command,
                                    require_explicit_success=True))  # fmt: skip
        assert (await req("PUT", "/api/process_definitions/p", admin, json=doc))[0] == 200
        assert (await req("POST", "/api/process_definitions/p/trigger", admin))[0] == 204
        assert (await req("GET", "/apis/v1/tasks", admin_basic))[0] == 200
        dag = {"tasks": {"t": {"job": {"command": ["/bin/sh", "-c", "echo dag"]}}}}
        status, body = await req("POST", "/v1/dagrun", admin, json=dag)
        assert status == 200
        dag_run = json.loads(body)["runID"]
        assert (await req("POST", "/v1/dagrun", viewer_h, json=dag))[0] == 403
        assert (await req("GET", "/api/process_definitions", viewer_h))[0] == 200
        assert (await req("GET", "/apis/v1/tasks", viewer_basic))[0] == 200
        for wrong in (decoy, TOKEN + "x", viewer[:-1]):
            status, _ = await req("GET", "/api/processes", {"Authorization": f"Bearer {wrong}"})
            assert status == 401

        status, body = await req("POST", "/worker/create", admin, keep=False, json={"alias": "w"})
        worker = json.loads(body)["content"]["worker"]
        wh = {"X-Worker-ID": str(worker["id"]), "X-Secret": worker["secret"]}
        _, body = await req("POST", "/project/create", admin, json={"name": "q"})
        pid = json.loads(body)["content"]["id"]
        access = {"project": pid, "assign": True, "submit": True}
        assert (await req("POST", "/project/request_access", wh, json=access))[0] == 200
        assert (await req("POST", f"/project/accept_request/{pid}/{worker['id']}", admin))[0] == 200
        assert (await req("POST", "/task/submit", wh, json={"project": pid, "recipe": "r"}))[
            0
        ] == 200
        _, body = await req("GET", f"/task/get/{pid}", wh)
        task_id = json.loads(body)["content"]["task"]["id"]
        release = {"task_id": task_id, "result": 0}
        assert (await req("POST", "/task/release", wh, json=release))[0] == 200
        entry = {"scope": "s", "message": "m", "timestamp": int(time.time())}
        assert (await req("POST", "/log/info", wh, json=entry))[0] == 200
        for bad in ({**wh, "X-Secret": decoy}, {**wh, "X-Secret": TOKEN},
                    {"X-Worker-ID": "999", "X-Secret": worker["secret"]}):  # fmt: skip
            assert (await req("GET", f"/task/get/{pid}", bad))[0] == 403  # as task_tracker

        deadline = time.monotonic() + 30
        while True:
            _, body = await req("GET", "/api/processes/?process_definition_name=p", admin)
            found = json.loads(body)
            if (found and found[0]["status"] != "running") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert found[0]["status"] == "succeeded", found  # the probe's calls all worked
        [attempt] = found[0]["task"]
        # Read what there is to read, as admin and viewer.
        for path in ("/api/processes/", "/api/tasks/", f"/api/tasks/{attempt['task_id']}/logs",
                     "/_internal_/metrics", "/v1/dagruns?all=1", f"/v1/dagrun/{dag_run}",
                     "/apis/v1/tasks", f"/worker/get/{worker['id']}", "/worker/stats",
                     f"/project/access_list/{pid}", f"/project/monitoring/{pid}",
                     "/project/list"):  # fmt: skip
            for headers in (admin, viewer_h):
                status, _ = await req("GET", path, headers)
                assert status == 200, path
        assert (await req("POST", "/logs", admin, json={"level": 5}))[0] == 200

    token = (tmp_path / "kept" / "task-token").read_text()
    assert token.startswith(attempt["task_id"] + ".")
    return {"admin": TOKEN, "viewer": viewer, "worker": worker["secret"], "task": token,
            "decoy": decoy}, bytes(replies)  # fmt: skip


def serve(tmp_path: Path, *args: str, port: int = 0, **env: str) -> subprocess.Popen[bytes]:
    """``taskd serve`` with nothing from this environment's TASKD_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKD_")}
    return subprocess.Popen(
        [sys.executable, "-m", "taskd", "serve", "--db", str(tmp_path / "taskd.db"),
         "--port", str(port or free_port()), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**clean, **env}, cwd=tmp_path,
    )  # fmt: skip


def output_of(proc: subprocess.Popen[bytes], within: float = 60) -> bytes:
    """What the process printed until it exited; killed if it does not exit in time."""
    try:
        return proc.communicate(timeout=within)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--host", "0.0.0.0"), {}),
        (("--host", "::"), {}),
        (("--host", "192.0.2.10"), {}),
        (("--host", "example.org"), {}),
        ((), {"TASKD_HOST": "0.0.0.0"}),
        (("--host", "0.0.0.0", "--admin-token", ""), {}),
        (("--host", "0.0.0.0"), {"TASKD_ADMIN_TOKEN": ""}),
    ],
)
def test_a_non_loopback_bind_without_credentials_refuses_to_start(tmp_path, args, env):
    proc = serve(tmp_path, *args, **env)
    out = output_of(proc)
    assert proc.returncode != 0
    assert b"refusing to listen" in out
    assert not (tmp_path / "taskd.db").exists()  # it stopped before touching anything


@pytest.mark.parametrize("blank", [" ", "   ", "\t"])
def test_a_blank_admin_token_is_refused(tmp_path, blank):
    """Regression: a blank token passed the credentials check, and HTTP Basic "admin: " then
    let anyone in as admin, on any interface."""
    for host in ("127.0.0.1", "0.0.0.0"):
        proc = serve(tmp_path, "--host", host, "--admin-token", blank)
        out = output_of(proc)
        assert proc.returncode != 0, out
        assert b"admin token is blank" in out
        assert not (tmp_path / "taskd.db").exists()


async def test_a_blank_password_is_nobody_whatever_the_configured_token(make_client):
    client = await make_client(admin_token=" ")  # refused by the CLI; the core refuses it too
    blank = {"Authorization": "Basic " + base64.b64encode(b"admin: ").decode()}
    resp = await client.get("/api/process_definitions", headers=blank)
    assert resp.status == 401
    resp = await client.put("/api/process_definitions/x", headers=blank, json={})
    assert resp.status == 401


async def test_a_non_loopback_bind_with_a_token_starts_and_needs_it(tmp_path):
    srv = Server(tmp_path, "--host", "0.0.0.0")
    await srv.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{srv.url}/api/processes") as resp:
                assert resp.status == 401
            async with http.get(f"{srv.url}/api/processes", headers=srv.headers) as resp:
                assert resp.status == 200
    finally:
        srv.terminate()


async def answers(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def test_a_generated_admin_token_is_printed_once_and_kept_private(tmp_path):
    outputs = []
    token_file = tmp_path / "taskd.db.token"
    for _ in range(2):
        port = free_port()
        proc = serve(tmp_path, port=port)
        url = f"http://127.0.0.1:{port}/ready"
        await wait_for(lambda url=url: answers(url), within=30)
        proc.terminate()
        outputs.append(output_of(proc))
    token = token_file.read_text().strip()
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert outputs[0].count(token.encode()) == 1
    assert token.encode() not in outputs[1]
    database = b"".join(p.read_bytes() for p in tmp_path.glob("taskd.db*") if p != token_file)
    assert database and token.encode() not in database
