"""Defects the API fuzzer (tests/fuzz) found, each pinned by the request that showed it.

Every one of these answered 500 (or accepted what it should refuse) before its fix.
"""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN

BEARER = {"Authorization": f"Bearer {ADMIN}"}
HUGE = "68574839326580244238827520"  # beyond 64 bits: SQLite cannot bind it
OPS = "/apis/v1/tasks/operations"


def sundial(body: dict) -> None:
    assert set(body) >= {"code", "message"}, body


def drove_invalid(body: dict) -> list[str]:
    assert body["status"] == "FAILED", body
    return body["data"]["validationErrors"]


@pytest.mark.parametrize(
    "path",
    [
        f"/api/processes?max_records={HUGE}",
        f"/api/processes/?max_records={HUGE}",
        f"/api/tasks?limit={HUGE}",
        f"/apis/v1/logfiles/tasks/app/task/read/output.log?offset={HUGE}",
        f"/apis/v1/logfiles/tasks/app/task/read/output.log?length={HUGE}",
    ],
)
async def test_query_integers_beyond_64_bits_are_400(make_client, path):
    """Found: GET /api/processes?max_records=<26 digits> -> 500 (OverflowError binding it)."""
    client = await make_client()
    resp = await client.get(path, headers=BEARER)
    assert resp.status == 400, await resp.text()
    assert "at most" in (await resp.json())["message"]


@pytest.mark.parametrize(
    "search",
    [
        {"from": 10**30},
        {"from": 2**63 // 1_000_000 + 1},  # fits 64 bits as ms, not as ns
    ],
)
async def test_drove_search_times_beyond_64_bits_are_400(make_client, search):
    """Found: POST /apis/v1/tasks/search {"from": 10**30} -> 500 (OverflowError)."""
    client = await make_client()
    resp = await client.post("/apis/v1/tasks/search", json=search, headers=BEARER)
    assert resp.status == 400, await resp.text()
    assert drove_invalid(await resp.json())


async def test_drove_search_latest_time_that_fits_is_accepted(make_client):
    client = await make_client()
    resp = await client.post(
        "/apis/v1/tasks/search", json={"from": 0, "to": 2**63 // 1_000_000}, headers=BEARER
    )
    assert resp.status == 200, await resp.text()


async def test_drove_search_multipart_without_boundary_is_400(make_client):
    """Found: Content-Type: multipart/form-data without a boundary -> 500 (ValueError)."""
    client = await make_client()
    headers = {**BEARER, "Content-Type": "multipart/form-data"}
    resp = await client.post("/apis/v1/tasks/search", data=b'{"taskId": "x"}', headers=headers)
    assert resp.status == 400, await resp.text()
    body = await resp.json()
    assert body["status"] == "FAILED" and "form" in body["message"]


async def test_drove_volume_path_with_nul_is_a_validation_error(make_client):
    """Found: CREATE with a volume pathOnHost holding a NUL byte -> 500 (realpath)."""
    client = await make_client(max_parallel=0, allowed_volumes=("/tmp",))
    volumes = [
        {"pathInContainer": "/data", "pathOnHost": "\u00f0\u0000x", "mode": "READ_WRITE"},
        {"pathInContainer": "/more", "pathOnHost": "/tmp/a\u0000b", "mode": "READ_ONLY"},
    ]
    spec = {
        "sourceAppName": "APP",
        "taskId": "T1",
        "executable": {"type": "DOCKER", "url": "taskd-test:latest"},
        "resources": [{"type": "CPU", "count": 1}, {"type": "MEMORY", "sizeInMB": 64}],
        "volumes": volumes,
    }
    body = {"type": "CREATE", "spec": spec, "opSpec": {"timeout": "5m"}}
    resp = await client.post(OPS, json=body, headers=BEARER)
    assert resp.status == 400, await resp.text()
    errors = drove_invalid(await resp.json())
    assert any("volumes[0].pathOnHost" in e for e in errors), errors
    assert any("volumes[1].pathOnHost" in e for e in errors), errors


def definition(name: str, **task: object) -> dict:
    one = {"task_definition_name": "t", "executable": {"shell_script_command": {"script": "true"}}}
    one.update(task)
    return {"process_definition_name": name, "task_definitions": [one]}


async def test_definition_name_with_a_trailing_newline_is_refused(make_client):
    """Found: PUT /api/process_definitions/abc%0A was stored as "abc\\n" (regex ``$``)."""
    client = await make_client()
    resp = await client.put(
        "/api/process_definitions/abc%0A", json=definition("abc\n"), headers=BEARER
    )
    assert resp.status == 400, await resp.text()
    sundial(await resp.json())
    resp = await client.put(
        "/api/process_definitions/abc",
        json=definition("abc", task_definition_name="t\n"),
        headers=BEARER,
    )
    assert resp.status == 400, await resp.text()


@pytest.mark.parametrize(
    "task",
    [
        {"task_definition_name": ""},
        {"dependencies": [{"task_definition_name": ""}]},
        {"dependencies": [{"task_definition_name": "  "}]},
    ],
)
async def test_empty_task_and_dependency_names_are_refused(make_client, task):
    """Found: a task named "" (and a dependency on "") was accepted and stored."""
    client = await make_client()
    resp = await client.put(
        "/api/process_definitions/p", json=definition("p", **task), headers=BEARER
    )
    assert resp.status == 400, await resp.text()
    body = await resp.json()
    sundial(body)
    assert any("task_definition_name" in e for e in body["errors"]), body


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("TRACE", "/ready", {"GET", "HEAD"}),
        ("DELETE", "/api/process_definitions/", {"GET", "HEAD"}),
        ("PUT", "/v1/dagrun/1", {"GET", "HEAD", "DELETE"}),
        ("GET", "/task/submit", {"POST"}),
        ("POST", "/apis/v1/tasks", {"GET", "HEAD"}),
    ],
)
async def test_405_names_the_allowed_methods(make_client, method, path, allowed):
    """Found: 405 answers had no Allow header (RFC 9110 requires one)."""
    client = await make_client()
    resp = await client.request(method, path, headers=BEARER)
    assert resp.status == 405
    assert {m.strip() for m in resp.headers["Allow"].split(",")} == allowed
    assert resp.content_type == "application/json"


@pytest.mark.parametrize("buffer", [1e12, 9e18, 1e25])
async def test_continuous_buffer_beyond_a_year_is_refused(make_client, buffer):
    """Found: a continuous_schedule buffer of 1e25 s -> 500 (a 64-bit overflow storing it);
    1e12 s was stored, then the scheduler failed on it and the PUT answered 500 anyway."""
    client = await make_client()
    body = definition("p")
    body["schedule"] = {"continuous_schedule": {"buffer_seconds": buffer}}
    resp = await client.put("/api/process_definitions/p", json=body, headers=BEARER)
    assert resp.status == 400, await resp.text()
    assert "buffer_seconds" in (await resp.json())["message"]
    resp = await client.get("/api/process_definitions/p", headers=BEARER)
    assert resp.status == 404  # nothing was stored


async def test_continuous_buffer_of_a_year_is_accepted(make_client):
    client = await make_client()
    body = definition("p")
    body["schedule"] = {"continuous_schedule": {"buffer_seconds": 366 * 86400}}
    body["paused"] = True
    resp = await client.put("/api/process_definitions/p", json=body, headers=BEARER)
    assert resp.status == 200, await resp.text()
