"""Who may call what (SPEC §5): every route of the app, enumerated.

Nothing that changes state answers an anonymous caller, a viewer token or a task token; a task
token works only for its own task's callbacks; queue workers act only within their grants;
bodies over the limit get 413 in every family's envelope. Containers are in
``test_containers.py``, secrets and the refusal to start unprotected in ``test_secrets.py``.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from pathlib import Path

import aiohttp

from taskd.auth import issue_token
from taskd.http.keys import SERVICES
from tests.conftest import ADMIN
from tests.processes.sundial import definition, put, shell, sql, trigger, wait_for

BASIC = {"Authorization": "Basic " + base64.b64encode(f"admin:{ADMIN}".encode()).decode()}

# Routes anyone may call. A new public route must be added here on purpose.
PUBLIC = {
    ("GET", "/ready"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/worker/get/{id}"),
    ("GET", "/project/get/{id}"),  # hidden projects only for admins and viewers
    ("GET", "/project/list"),
    ("GET", "/api/schemas/definition.json"),  # static: editors fetch it without a token
}
# Worker routes: public to the guard, they authenticate X-Worker-ID / X-Secret themselves.
WORKER = {
    ("POST", "/worker/create"),  # the admin only, unless --queue-open-registration
    ("POST", "/worker/update"),
    ("POST", "/task/submit"),
    ("POST", "/task/bulk_submit"),
    ("GET", "/task/get/{project}"),  # a lease: a GET that changes state
    ("POST", "/task/release"),
    ("POST", "/task/bulk_release"),
    ("POST", "/log/{level}"),
    ("POST", "/project/request_access"),
    ("GET", "/project/secret/{id}"),
}
# Non-GET routes that only read (searches, validation): a viewer may call them.
READ_POSTS = {
    ("POST", "/v1/dagrun/validate"),
    ("POST", "/apis/v1/tasks/search"),
    ("POST", "/apis/v1/tasks/validate/spec"),
    ("POST", "/logs"),
}
CALLBACKS = ("log_entries", "metadata", "succeed", "fail")


def routes_of(app) -> list[tuple[str, str, str]]:
    """(method, canonical path, access level) of every API route; HEAD goes with its GET.

    The dashboard's pages check their session cookie themselves (tests/ui/test_routes.py).
    """
    found = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.handler.__module__.startswith("taskd.web"):
            continue
        level = getattr(route.handler, "taskd_access", "admin")
        found.add((route.method, route.resource.canonical, level))
    return sorted(found)


SAMPLES = {
    "name": "sample", "process_id": str(uuid.uuid4()), "task_id": str(uuid.uuid4()),
    "runid": "1", "state": "QUEUED", "id": "1", "wid": "1", "project": "1",
    "level": "info", "sourceAppName": "APP", "taskId": "t1", "fileName": "output.log",
}  # fmt: skip


def sample_path(canonical: str, **given: str) -> str:
    values = {**SAMPLES, **given}
    return re.sub(r"\{(\w+)[^}]*\}", lambda m: values[m.group(1)], canonical)


async def call(client, method: str, path: str, headers: dict[str, str]) -> int:
    resp = await client.request(method, path, data=b"{}", headers=headers)
    await resp.read()
    return resp.status


async def task_tokens(client, tmp_path: Path, count: int) -> list[tuple[str, str]]:
    """(attempt uuid, task token) of ``count`` real attempts, which the jobs wrote down.

    The jobs keep running: a task token is good only while its attempt runs.
    """
    out, tmp = tmp_path / "tokens", tmp_path / "tokens-tmp"
    out.mkdir()
    tmp.mkdir()
    script = (
        f'printf "%s %s" "$TASKD_TASK_ID" "$TASKD_TASK_TOKEN" > {tmp}/$TASKD_TASK_NAME'
        f" && mv {tmp}/$TASKD_TASK_NAME {out}/ && exec sleep 60"
    )
    tasks = [shell(f"t{i}", script) for i in range(count)]
    await put(client, definition("tokens", *tasks))
    await trigger(client, "tokens")

    async def written():
        found = sorted(out.iterdir())
        return found if len(found) == count else None

    return [tuple(p.read_text().split()) for p in await wait_for(written, 30)]


# -- who may call what ------------------------------------------------------------------------


async def test_every_public_or_worker_route_is_known_to_these_tests(make_client):
    client = await make_client()
    for method, path, level in routes_of(client.server.app):
        if level == "public":
            assert (method, path) in PUBLIC | WORKER, f"{method} {path} is public: on purpose?"
        if method not in ("GET", "HEAD") and level == "read":
            assert (method, path) in READ_POSTS, f"{method} {path} is open to viewers"
        assert level != "task" or (method == "POST" and path.startswith("/api/tasks/{task_id}/"))


async def test_no_route_but_the_public_ones_answers_an_anonymous_caller(make_client):
    client = await make_client()
    checked = 0
    for method, path, _ in routes_of(client.server.app):
        if (method, path) in PUBLIC:
            continue
        status = await call(client, method, sample_path(path), {})
        # task_tracker refuses a lease or release without worker credentials with 403.
        expected = (
            403 if path in ("/task/get/{project}", "/task/release", "/task/bulk_release") else 401
        )
        assert status == expected, f"anonymous {method} {path} answered {status}"
        checked += 1
    assert checked > 50


async def test_a_viewer_token_changes_nothing(make_client):
    client = await make_client()
    viewer = await issue_token(client.server.app[SERVICES].store, "viewer", "security")
    for scheme, headers in (
        ("bearer", {"Authorization": f"Bearer {viewer}"}),
        ("basic", {"Authorization": "Basic " + base64.b64encode(f"v:{viewer}".encode()).decode()}),
    ):
        for method, path, _ in routes_of(client.server.app):
            if (method == "GET" and (method, path) not in WORKER) or (method, path) in READ_POSTS:
                continue  # reading is what a viewer is for
            status = await call(client, method, sample_path(path), headers)
            if (method, path) in WORKER:
                assert status in (401, 403), f"viewer ({scheme}) {method} {path}: {status}"
            elif scheme == "basic" and not path.startswith("/apis/"):
                # HTTP Basic counts only on Drove's routes; elsewhere it is no credential.
                assert status == 401, f"viewer ({scheme}) {method} {path}: {status}"
            else:
                assert status == 403, f"viewer ({scheme}) {method} {path}: {status}"


async def test_a_task_token_opens_its_own_callbacks_and_nothing_else(make_client, tmp_path):
    """Extends tests/core/test_app.py's probe: every route, and a real other task."""
    client = await make_client()
    (mine, token), (other, other_token) = await task_tokens(client, tmp_path, 2)
    headers = {"Authorization": f"Bearer {token}"}
    for method, path, _ in routes_of(client.server.app):
        if (method, path) in PUBLIC:
            continue
        for task_id in (mine, other):
            status = await call(client, method, sample_path(path, task_id=task_id), headers)
            own = task_id == mine and path.startswith("/api/tasks/{task_id}/")
            if own and path.rsplit("/", 1)[1] in CALLBACKS:
                assert status not in (401, 403), f"own {method} {path}: {status}"
            else:
                assert status in (401, 403), f"task token on {method} {path}: {status}"
    # The other task was not touched; a token names its attempt and cannot be re-aimed.
    rows = await sql(client, "SELECT uuid, reported FROM attempts ORDER BY uuid")
    assert {r["uuid"]: r["reported"] for r in rows}[other] is None
    secret = token.partition(".")[2]
    for forged in (f"{other}.{secret}", f"{mine}.{other_token.partition('.')[2]}", f"{mine}."):
        resp = await client.post(f"/api/tasks/{other}/succeed",
                                 headers={"Authorization": f"Bearer {forged}"})  # fmt: skip
        assert resp.status == 401
        resp = await client.post(f"/api/tasks/{mine}/succeed",
                                 headers={"Authorization": f"Bearer {forged}"})  # fmt: skip
        assert resp.status == 401


async def test_queue_workers_act_only_within_their_grants(make_client, admin_headers):
    client = await make_client()

    async def post(path, body=None, headers=None):
        resp = await client.post(path, json=body, headers=headers or admin_headers)
        return resp.status, await resp.json()

    async def worker(alias):
        _, body = await post("/worker/create", {"alias": alias})
        w = body["content"]["worker"]
        return w["id"], {"X-Worker-ID": str(w["id"]), "X-Secret": w["secret"]}

    _, body = await post("/project/create", {"name": "private", "public": False})
    pid = body["content"]["id"]
    (sid, submitter), (aid, assigner), (_, stranger) = [await worker(a) for a in "sat"]
    for wid, assign, submit in ((sid, False, True), (aid, True, False)):
        hdrs = submitter if wid == sid else assigner
        body = {"project": pid, "assign": assign, "submit": submit}
        assert (await post("/project/request_access", body, hdrs))[0] == 200
        assert (await post(f"/project/accept_request/{pid}/{wid}"))[0] == 200

    task = {"project": pid, "recipe": "r"}
    assert (await post("/task/submit", task, submitter))[0] == 200
    assert (await post("/task/submit", task, assigner))[0] == 403  # ASSIGN is not SUBMIT
    assert (await post("/task/submit", task, stranger))[0] == 403
    lease = f"/task/get/{pid}"
    assert (await client.get(lease, headers=submitter)).status == 403  # SUBMIT is not ASSIGN
    assert (await client.get(lease, headers=stranger)).status == 403
    # A worker cannot grant itself anything, nor manage projects or other workers.
    for path, body in ((f"/project/accept_request/{pid}/{sid}", None),
                       ("/project/create", {"name": "mine"}),
                       (f"/project/update/{pid}", {"public": True}),
                       (f"/project/hard_reset/{pid}", None),
                       (f"/project/secret/{pid}", {"secret": "s"}),
                       ("/worker/set_paused", {"worker": aid, "paused": True}),
                       ("/worker/create", {"alias": "more"})):  # fmt: skip
        assert (await post(path, body, submitter))[0] == 401, path
    # Another worker's id with one's own secret is nobody.
    mixed = {"X-Worker-ID": assigner["X-Worker-ID"], "X-Secret": submitter["X-Secret"]}
    assert (await client.get(lease, headers=mixed)).status == 403  # as task_tracker answers
    resp = await client.get(lease, headers=assigner)
    leased = (await resp.json())["content"]["task"]
    release = {"task_id": leased["id"], "result": 0}
    assert (await post("/task/release", release, submitter))[1]["content"]["updated"] is False
    # Nor in a batch: the whole batch is refused, naming the task.
    status, reply = await post("/task/bulk_release", {"releases": [release]}, submitter)
    assert status == 409 and f"task {leased['id']}" in reply["message"], reply
    assert (await post("/task/release", release, assigner))[1]["content"]["updated"] is True


# -- request bodies over the limit ------------------------------------------------------------


async def test_bodies_over_the_limit_get_413_in_every_familys_envelope(make_client,
                                                                      admin_headers):  # fmt: skip
    client = await make_client(max_body_bytes=1024)
    big = json.dumps({"padding": "x" * 5000})
    cases = [
        ("PUT", "/api/process_definitions/p", admin_headers, lambda b: b["code"] == "too_large"),
        ("POST", "/v1/dagrun", admin_headers, lambda b: "error" in b),
        ("POST", "/v1/dagrun/validate", admin_headers, lambda b: "error" in b),
        ("POST", "/apis/v1/tasks/operations", BASIC, lambda b: b["status"] == "FAILED"),
        ("POST", "/apis/v1/tasks/search", BASIC, lambda b: b["status"] == "FAILED"),
        ("POST", "/project/create", admin_headers, lambda b: b["ok"] is False),
        ("POST", "/task/submit", {"X-Worker-ID": "1", "X-Secret": "x"}, lambda b: b["ok"] is False),
        ("POST", "/worker/create", admin_headers, lambda b: b["ok"] is False),
        # Routes that never read a body refuse a large one all the same.
        ("POST", "/api/process_definitions/p/trigger", admin_headers, lambda b: "code" in b),
        ("DELETE", "/v1/dagrun/1", admin_headers, lambda b: "error" in b),
        ("POST", "/project/hard_reset/1", admin_headers, lambda b: b["ok"] is False),
        ("POST", f"/api/tasks/{uuid.uuid4()}/succeed", {}, lambda b: "code" in b),
    ]
    for method, path, headers, shape in cases:
        resp = await client.request(method, path, data=big, headers=headers)
        assert resp.status == 413, f"{method} {path}: {resp.status} {await resp.text()}"
        body = await resp.json()
        assert shape(body), f"{method} {path}: {body}"
        assert "larger" in json.dumps(body)
    # A form (Drove's search) too, and a body sent without a length (chunked).
    form = aiohttp.FormData({"taskSearchAppName": "a" * 5000, "taskSearchTaskID": "t"})
    resp = await client.post("/apis/v1/tasks/search", data=form, headers=BASIC)
    assert resp.status == 413
    assert (await resp.json())["status"] == "FAILED"

    async def chunks():
        for _ in range(10):
            yield b"x" * 1000

    resp = await client.put("/api/process_definitions/p", data=chunks(), headers=admin_headers)
    assert resp.status == 413
    assert (await resp.json())["code"] == "too_large"
