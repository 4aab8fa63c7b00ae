"""The HTTP shell shared by every family: health, errors, credentials, body limits."""

from __future__ import annotations

import base64
import sys

from taskd.auth import issue_token
from taskd.http.keys import SERVICES
from tests.processes.sundial import H, definition, finished_process, put, shell, trigger


async def test_ready_needs_no_credentials(make_client):
    client = await make_client()
    resp = await client.get("/ready")
    assert resp.status == 200
    assert await resp.json() == {"msg": "Ya like DAGs?"}


async def test_unknown_routes_are_404_in_each_family_envelope(make_client):
    client = await make_client()
    resp = await client.get("/apis/v1/nothing-here")
    assert resp.status == 404
    body = await resp.json()
    assert body["status"] == "FAILED" and "no route" in body["message"]
    resp = await client.get("/v1/nothing")
    assert resp.status == 404 and "error" in await resp.json()
    resp = await client.get("/api/nothing")
    assert resp.status == 404 and (await resp.json())["code"] == "not_found"
    resp = await client.delete("/ready")
    assert resp.status == 405


async def test_basic_auth_with_the_admin_token_works_like_bearer_on_drove(make_client):
    client = await make_client()
    good = base64.b64encode(b"admin:test-admin-token").decode()
    bad = base64.b64encode(b"admin:wrong").decode()
    resp = await client.get("/apis/v1/tasks", headers={"Authorization": f"Basic {good}"})
    assert resp.status == 200
    resp = await client.get("/apis/v1/tasks", headers={"Authorization": f"Basic {bad}"})
    assert resp.status == 401
    resp = await client.get("/apis/v1/tasks", headers={"Authorization": "Basic !!"})
    assert resp.status == 401
    # Only Drove's clients send Basic; elsewhere a browser's cached password counts for nothing.
    resp = await client.get("/api/process_definitions/", headers={"Authorization": f"Basic {good}"})
    assert resp.status == 401


async def test_reads_need_a_credential_and_viewers_cannot_change_anything(make_client):
    client = await make_client()
    viewer = await issue_token(client.server.app[SERVICES].store, "viewer", "dashboards")
    vh = {"Authorization": f"Bearer {viewer}"}
    resp = await client.get("/api/process_definitions/")
    assert resp.status == 401
    resp = await client.get("/api/process_definitions/", headers=vh)
    assert resp.status == 200
    resp = await client.put("/api/process_definitions/p", json=definition("p", shell("a", "true")),
                            headers=vh)  # fmt: skip
    assert resp.status == 403
    resp = await client.get("/_internal_/metrics", headers=vh)
    assert resp.status == 200


async def test_bodies_over_the_limit_are_413(make_client):
    client = await make_client(max_body_bytes=1024)
    resp = await client.put("/api/process_definitions/p", data=b"x" * 5000, headers=H)
    assert resp.status == 413
    assert "larger" in (await resp.json())["message"]


async def test_task_token_works_only_for_its_own_task_callbacks(make_client, tmp_path):
    """A local job calls back with its token: its own callbacks work, nothing else does."""
    results = tmp_path / "results"
    client = await make_client()
    url = str(client.make_url("")).rstrip("/")
    probe = f"""
import json, os, urllib.request
base, tid, tok = {url!r}, os.environ["TASKD_TASK_ID"], os.environ["TASKD_TASK_TOKEN"]
def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={{"Authorization": "Bearer " + tok}})
    try:
        return urllib.request.urlopen(req).status
    except urllib.error.HTTPError as e:
        return e.code
codes = {{
    "metadata": call("POST", f"/api/tasks/{{tid}}/metadata", [{{"metadata_entry_id":
        "9a7d0f7e-7a4c-4b1e-9d59-3c1a2b3c4d5e", "when": "2026-01-01T00:00:00Z",
        "key": "k", "value": "v"}}]),
    "fail": call("POST", f"/api/tasks/{{tid}}/fail"),
    "other_task": call("POST", "/api/tasks/6f1c55f4-5f1e-4a4e-8c4e-000000000000/succeed"),
    "read": call("GET", "/api/process_definitions/"),
    "put": call("PUT", "/api/process_definitions/evil", {{}}),
}}
open({str(results)!r}, "w").write(json.dumps(codes))
"""
    (tmp_path / "probe.py").write_text(probe)
    await put(client, definition("p", shell("probe", f"{sys.executable} {tmp_path / 'probe.py'}")))
    await trigger(client, "p")
    [proc] = await finished_process(client, "p")
    import json

    codes = json.loads(results.read_text())
    assert codes == {"metadata": 204, "fail": 204, "other_task": 403, "read": 403, "put": 403}
    [task] = proc["task"]
    assert task["status"] == "failed"  # exit 0, but it reported failure
    assert task["metadata_entries"][0]["key"] == "k"
