"""Compatibility with task_tracker: every example of the seed's work queue document replayed and
checked field by field, the behaviour the document states, and the requests of task_tracker's
own client libraries replayed as they send them against a real ``taskd serve``.

No task_tracker client is published on a package registry. Two live in repositories: the
Python worker library (``tt_drone.api``: ``requests``, JSON bodies sent with no Content-Type,
``User-Agent: tt_py_client1.0``) and the Go client in the server's repository (``net/http``,
``X-Worker-Id`` / ``X-Secret``). Their requests are rebuilt here byte for byte from their
code, and their replies are read the way their code reads them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import pytest
import requests

from tests.server import Server

FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what the seed's curl -d sends
SEED_PROJECT = {
    "priority": 999,
    "name": "My project",
    "clone_url": "http://github.com/test/test",
    "git_repo": "myrepo",
    "version": "1.0",
    "motd": "",
    "public": True,
    "hidden": False,
    "chain": 0,
    "paused": False,
    "assign_rate": 2,
    "submit_rate": 2,
}
SEED_TASK_KEYS = {
    "id",
    "priority",
    "assignee",
    "retries",
    "max_retries",
    "status",
    "recipe",
    "max_assign_time",
    "assign_time",
    "verification_count",
    "project",
}


class Seed:
    """The seed's curl examples, sent as curl sends them (``-d`` means a form Content-Type)."""

    def __init__(self, client: Any, admin: dict[str, str]) -> None:
        self.client = client
        self.admin = admin

    async def call(self, method: str, path: str, body: str | None = None, headers=None):
        resp = await self.client.request(method, path, data=body, headers=headers or {})
        text = await resp.text()
        return resp.status, (json.loads(text) if text else None)

    async def worker(self, alias: str) -> dict[str, str]:
        status, body = await self.call("POST", "/worker/create", json.dumps({"alias": alias}), FORM)
        assert status == 200, body
        w = body["content"]["worker"]
        return {"X-Worker-ID": str(w["id"]), "X-Secret": w["secret"], "id": w["id"]}

    async def project(self, **fields: Any) -> int:
        doc = {k: v for k, v in {**SEED_PROJECT, **fields}.items() if k != "paused"}
        status, body = await self.call("POST", "/project/create", json.dumps(doc), self.admin)
        assert status == 200, body
        return body["content"]["id"]

    async def grant(self, pid: int, creds: dict[str, Any]) -> None:
        access = json.dumps({"assign": True, "submit": True, "project": pid})
        assert (await self.call("POST", "/project/request_access", access, h(creds)))[0] == 200
        path = f"/project/accept_request/{pid}/{creds['id']}"
        assert (await self.call("POST", path, headers=self.admin))[0] == 200


def h(creds: dict[str, Any]) -> dict[str, str]:
    return {"X-Worker-ID": creds["X-Worker-ID"], "X-Secret": creds["X-Secret"], **FORM}


def submit_body(pid: int, recipe: str = "test recipe", **over: Any) -> str:
    doc = {
        "project": pid,
        "max_retries": 3,
        "recipe": recipe,
        "priority": 1,
        "max_assign_time": 3600,
        "hash64": 0,
        "unique_string": "",
        "verification_count": 0,
        **over,
    }
    return json.dumps(doc)


@pytest.fixture
async def seed(make_client, admin_headers):
    client = await make_client(queue_open_registration=True)
    return Seed(client, admin_headers)


# -- the seed document, example by example ------------------------------------------------------


async def test_every_example_of_the_seed_field_by_field(seed):
    call = seed.call
    # /worker/create
    status, body = await call("POST", "/worker/create", '{"alias": "some alias"}', FORM)
    assert status == 200 and set(body) == {"ok", "content"} and body["ok"] is True
    w = body["content"]["worker"]
    assert set(w) == {"id", "created", "alias", "secret", "paused"}
    assert isinstance(w["id"], int) and isinstance(w["created"], int)
    assert w["alias"] == "some alias" and w["paused"] is False
    assert len(base64.b64decode(w["secret"], validate=True)) == 32
    creds = {"X-Worker-ID": str(w["id"]), "X-Secret": w["secret"], "id": w["id"]}
    # /worker/update
    status, body = await call("POST", "/worker/update", '{"alias": "another alias"}', h(creds))
    assert (status, body) == (200, {"ok": True})
    # /project/request_access (the project of the examples, made by the admin)
    pid = await seed.project()
    access = json.dumps({"assign": True, "submit": True, "project": pid})
    assert await call("POST", "/project/request_access", access, h(creds)) == (200, {"ok": True})
    await call("POST", f"/project/accept_request/{pid}/{w['id']}", headers=seed.admin)
    # /task/submit
    assert await call("POST", "/task/submit", submit_body(pid), h(creds)) == (200, {"ok": True})
    # /task/get/:project
    status, body = await call("GET", f"/task/get/{pid}", headers=h(creds))
    assert status == 200 and set(body) == {"ok", "content"} and body["ok"] is True
    task = body["content"]["task"]
    assert set(task) == SEED_TASK_KEYS
    assert {k: task[k] for k in ("priority", "assignee", "retries", "max_retries", "status")} == {
        "priority": 1,
        "assignee": w["id"],
        "retries": 0,
        "max_retries": 3,
        "status": 1,
    }
    assert task["recipe"] == "test recipe" and task["verification_count"] == 0
    assert task["max_assign_time"] == 3600  # what was submitted (the document's 0 is a slip)
    assert isinstance(task["assign_time"], int) and abs(task["assign_time"] - time.time()) < 60
    assert task["project"] == {"id": pid, **SEED_PROJECT}
    # /task/release
    release = json.dumps({"task_id": task["id"], "result": 0, "verification": -32315129})
    status, body = await call("POST", "/task/release", release, h(creds))
    assert (status, body) == (200, {"ok": True, "content": {"updated": True}})
    # /log/info (and the other levels)
    log = {"scope": "Arbitrary log category", "message": "message", "timestamp": 1559393394}
    for level in ("trace", "info", "warn", "error"):
        assert await call("POST", f"/log/{level}", json.dumps(log), h(creds)) == (200, {"ok": True})
    # /project/get/:id: the fields straight under content, as the document shows
    assert await call("GET", f"/project/get/{pid}") == (
        200,
        {"ok": True, "content": {"id": pid, **SEED_PROJECT}},
    )
    # /project/list
    status, body = await call("GET", "/project/list")
    assert status == 200 and body == {
        "ok": True,
        "content": {"projects": [{"id": pid, **SEED_PROJECT}]},
    }


async def test_bulk_submit_takes_the_documented_array_of_submit_requests(seed):
    creds = await seed.worker("bulk")
    pid = await seed.project(submit_rate=0, assign_rate=0)
    await seed.grant(pid, creds)
    bare = "[" + ", ".join(submit_body(pid, f"r{i}", hash64=i + 1) for i in range(3)) + "]"
    assert await seed.call("POST", "/task/bulk_submit", bare, h(creds)) == (200, {"ok": True})
    wrapped = json.dumps({"requests": [json.loads(submit_body(pid, "r9"))]})
    assert await seed.call("POST", "/task/bulk_submit", wrapped, h(creds)) == (200, {"ok": True})
    # "Tasks must be for the same project"
    other = await seed.project(name="other")
    mixed = f"[{submit_body(pid, 'x')}, {submit_body(other, 'y')}]"
    status, body = await seed.call("POST", "/task/bulk_submit", mixed, h(creds))
    assert status == 400 and body["ok"] is False and "same project" in body["message"]
    status, body = await seed.call("POST", "/task/bulk_submit", "[]", h(creds))
    assert status == 400 and body["ok"] is False
    recipes = []
    while True:
        status, body = await seed.call("GET", f"/task/get/{pid}", headers=h(creds))
        if not body["ok"]:
            break
        recipes.append(body["content"]["task"]["recipe"])
    assert sorted(recipes) == ["r0", "r1", "r2", "r9"]


async def test_verification_count_needs_that_many_workers_agreeing(seed):
    """The document's example: VerificationCount 2 = two different workers release the task
    with the same verification hash before it is closed."""
    w1, w2, w3 = [await seed.worker(a) for a in ("w1", "w2", "w3")]
    pid = await seed.project(assign_rate=0, submit_rate=0)
    for w in (w1, w2, w3):
        await seed.grant(pid, w)
    await seed.call("POST", "/task/submit", submit_body(pid, verification_count=2), h(w1))
    answers = []
    for worker, verification in ((w1, 123), (w2, 1), (w3, 123)):
        status, body = await seed.call("GET", f"/task/get/{pid}", headers=h(worker))
        tid = body["content"]["task"]["id"]
        release = json.dumps({"task_id": tid, "result": 0, "verification": verification})
        answers.append((await seed.call("POST", "/task/release", release, h(worker)))[1])
    assert [a["content"]["updated"] for a in answers] == [False, False, True]
    assert all(a["ok"] is True for a in answers)
    assert "not marked as closed" in answers[0]["message"]
    status, body = await seed.call("GET", f"/task/get/{pid}", headers=h(w1))
    assert (status, body) == (200, {"ok": False, "message": "No task available"})


async def test_release_results_fail_and_skip_as_documented(seed):
    creds = await seed.worker("r")
    pid = await seed.project(assign_rate=0, submit_rate=0)
    await seed.grant(pid, creds)
    await seed.call("POST", "/task/submit", submit_body(pid, max_retries=2), h(creds))

    async def lease_and_release(result: int) -> dict:
        _, body = await seed.call("GET", f"/task/get/{pid}", headers=h(creds))
        task = body["content"]["task"]
        release = json.dumps({"task_id": task["id"], "result": result, "verification": 0})
        await seed.call("POST", "/task/release", release, h(creds))
        return task

    assert (await lease_and_release(2))["retries"] == 0  # TR_SKIP
    assert (await lease_and_release(1))["retries"] == 0  # TR_FAIL: counted...
    assert (await lease_and_release(1))["retries"] == 1  # ... and FAILED after max_retries
    assert await seed.call("GET", f"/task/get/{pid}", headers=h(creds)) == (
        200,
        {"ok": False, "message": "No task available"},
    )


async def test_submit_rate_is_the_originals_one_request_per_interval(seed):
    creds = await seed.worker("rate")
    pid = await seed.project()  # submit_rate 2, assign_rate 2: the document's project
    await seed.grant(pid, creds)
    first = await seed.call("POST", "/task/submit", submit_body(pid, "a"), h(creds))
    second = await seed.call("POST", "/task/submit", submit_body(pid, "b"), h(creds))
    assert first == (200, {"ok": True})
    status, body = second
    assert status == 429 and set(body) == {"ok", "message", "rate_limit_delay"}
    assert body["ok"] is False and body["message"] == "Too many requests"
    assert 0 < body["rate_limit_delay"] <= 0.5
    # assign_rate: an answer with no task spends the token too, as in task_tracker.
    empty = await seed.project(name="empty")
    await seed.grant(empty, creds)
    assert (await seed.call("GET", f"/task/get/{empty}", headers=h(creds)))[1]["ok"] is False
    status, body = await seed.call("GET", f"/task/get/{empty}", headers=h(creds))
    assert status == 429 and 0 < body["rate_limit_delay"] <= 0.5


async def test_error_statuses_are_the_originals(seed):
    creds = await seed.worker("e")
    pid = await seed.project(assign_rate=0, submit_rate=0)
    await seed.grant(pid, creds)
    body = submit_body(pid, hash64=77)
    assert (await seed.call("POST", "/task/submit", body, h(creds)))[0] == 200
    status, reply = await seed.call("POST", "/task/submit", body, h(creds))
    assert status == 400 and reply["ok"] is False and "77" in reply["message"]  # duplicate hash
    bad = {**h(creds), "X-Secret": base64.b64encode(b"x" * 32).decode()}
    release = json.dumps({"task_id": 1, "result": 0, "verification": 0})
    expected = [
        ("POST", "/task/submit", submit_body(pid), 401),
        ("POST", "/task/bulk_submit", f"[{submit_body(pid)}]", 401),
        ("POST", "/worker/update", '{"alias": "x"}', 401),
        ("POST", "/project/request_access", '{"project": 1, "assign": true}', 401),
        ("GET", f"/task/get/{pid}", None, 403),
        ("POST", "/task/release", release, 403),
    ]
    for method, path, data, code in expected:
        status, reply = await seed.call(method, path, data, bad)
        assert (status, reply) == (code, {"ok": False, "message": "invalid secret"}), path
        status, reply = await seed.call(method, path, data, FORM)
        assert (status, reply) == (code, {"ok": False, "message": "worker id not specified"}), path
    # A second access request: 400, as the original answers it.
    access = json.dumps({"assign": True, "submit": True, "project": pid})
    status, reply = await seed.call("POST", "/project/request_access", access, h(creds))
    assert status == 400 and reply["ok"] is False


# -- task_tracker's Python worker library (tt_drone.api), replayed -------------------------------

PY_UA = "tt_py_client1.0"


class PyWorkerLibrary:
    """The requests ``tt_drone.api.TaskTrackerApi`` sends, and how it reads the replies.

    The library posts ``json.dumps(body).encode()`` with ``requests.post(data=...)`` (so no
    Content-Type), always sends its User-Agent and ``X-Worker-Id``/``Timestamp`` headers, and
    treats a reply as usable only when ``requests`` finds it truthy (status < 400).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def headers(self, worker: dict[str, Any] | None) -> dict[str, str]:
        wid = worker["id"] if worker else None
        out = {"User-Agent": PY_UA, "X-Worker-Id": str(wid), "Timestamp": "None"}
        if worker:
            out["X-Secret"] = worker["secret"]  # the documented worker protocol
        return out

    def post(self, path: str, body: Any, worker: dict | None = None) -> requests.Response:
        data = json.dumps(body).encode("utf8")
        return self.http.post(self.url + path, data=data, headers=self.headers(worker), timeout=5)

    def get(self, path: str, worker: dict | None = None) -> requests.Response:
        return self.http.get(self.url + path, headers=self.headers(worker), timeout=5)

    def make_worker(self, alias: str) -> dict[str, Any]:
        response = self.post("/worker/create", {"alias": alias})
        assert response, response.text  # the library reads nothing from a falsy reply
        reply = json.loads(response.text)
        assert response.status_code == 200, reply["message"]
        w = reply["content"]["worker"]
        base64.b64decode(w["secret"])  # the library keeps the decoded secret
        return {"id": w["id"], "alias": w["alias"], "secret": w["secret"]}

    def fetch_task(self, worker: dict, project: int) -> dict[str, Any] | None:
        response = self.get(f"/task/get/{project}", worker)
        if response:
            reply = json.loads(response.text)
            if reply["ok"]:
                task = reply["content"]["task"]
                project_keys = ("id", "priority", "name", "clone_url", "git_repo", "version")
                fields = ("id", "priority", "retries", "max_retries", "status", "recipe")
                fields += ("max_assign_time", "assign_time", "verification_count")
                return {
                    **{k: task[k] for k in fields},
                    "project": {k: task["project"][k] for k in (*project_keys, "motd", "public")},
                }
        return None

    def submit_task(self, worker: dict, project: int, recipe: str, **kw: Any):
        body = {
            "project": project,
            "recipe": recipe,
            "priority": kw.get("priority", 1),
            "max_assign_time": kw.get("max_assign_time", 3600),
            "hash_u64": kw.get("hash64", 0),
            "unique_str": kw.get("unique_str", ""),
            "verification_count": kw.get("verification_count", 1),
            "max_retries": kw.get("max_retries", 3),
        }
        return self.post("/task/submit", body, worker)

    def release_task(self, worker: dict, task_id: int, result: int, verification: int):
        body = {"task_id": task_id, "result": result, "verification": verification}
        return self.post("/task/release", body, worker)

    def log(self, worker: dict, level: int, message: str, timestamp: int, scope: str):
        name = {7: "trace", 5: "info", 4: "warn", 3: "error"}[level]
        body = {"level": level, "message": message, "timestamp": timestamp, "scope": scope}
        return self.post(f"/log/{name}", body, worker)

    def request_access(self, worker: dict, project: int, assign: bool, submit: bool):
        body = {"project": project, "assign": assign, "submit": submit}
        return self.post("/project/request_access", body, worker)

    def get_secret(self, worker: dict, project: int) -> str | None:
        r = self.get("/project/secret/" + str(project), worker)
        if r.status_code == 200:
            return json.loads(r.text)["content"]["secret"]
        return None


@pytest.fixture
async def open_server(tmp_path):
    server = Server(tmp_path, "--queue-open-registration")
    await server.start()
    yield server
    server.stop()


async def make_project(server: Server, **fields: Any) -> int:
    doc = {k: v for k, v in {**SEED_PROJECT, **fields}.items() if k != "paused"}
    status, body = await server.request("POST", "/project/create", json=doc)
    assert status == 200, body
    return body["content"]["id"]


async def accept(server: Server, pid: int, wid: int) -> None:
    status, body = await server.request("POST", f"/project/accept_request/{pid}/{wid}")
    assert status == 200, body


async def test_python_worker_library_register_submit_get_release_log(open_server):
    lib = PyWorkerLibrary(open_server.url)
    run = asyncio.to_thread
    worker = await run(lib.make_worker, "drone")
    assert worker["alias"] == "drone"
    pid = await make_project(open_server, public=False, assign_rate=0, submit_rate=0)
    r = await run(lib.request_access, worker, pid, True, True)
    assert r.status_code == 200 and r.json() == {"ok": True}
    await accept(open_server, pid, worker["id"])
    await open_server.request("POST", f"/project/secret/{pid}", json={"secret": "s3cret"})
    assert await run(lib.get_secret, worker, pid) == "s3cret"

    r = await run(lib.submit_task, worker, pid, "recipe 1", hash64=5)
    assert r.status_code == 200 and r.json() == {"ok": True}
    # The drone forwards a task's optional fields as they are, nulls included.
    r = await run(
        lib.submit_task, worker, pid, "recipe 2", priority=None, max_assign_time=None,
        hash64=None, unique_str=None, verification_count=None, max_retries=None,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    r = await run(lib.submit_task, worker, pid, "dup", hash64=5)
    assert r.status_code == 400 and r.json()["ok"] is False

    task = await run(lib.fetch_task, worker, pid)
    assert task is not None and task["recipe"] == "recipe 1" and task["verification_count"] == 1
    assert task["project"]["id"] == pid and task["project"]["public"] is False
    r = await run(lib.release_task, worker, task["id"], 0, 0)
    assert r.status_code == 200 and r.json() == {"ok": True, "content": {"updated": True}}

    r = await run(lib.log, worker, 5, "hello", int(time.time()), "tt_py_client")
    assert r.status_code == 200 and r.json() == {"ok": True}
    status, body = await open_server.request("POST", "/logs", json={"level": 5, "since": 1})
    assert status == 200
    (entry,) = body["content"]["logs"]
    assert entry["message"] == "hello" and json.loads(entry["data"])["scope"] == "tt_py_client"

    second = await run(lib.fetch_task, worker, pid)
    assert second is not None and second["recipe"] == "recipe 2"
    assert await run(lib.fetch_task, worker, pid) is None  # nothing left: None, no error


async def test_python_worker_library_reads_rate_limit_delay_on_429(open_server):
    lib = PyWorkerLibrary(open_server.url)
    worker = await asyncio.to_thread(lib.make_worker, "drone")
    pid = await make_project(open_server, submit_rate=0.5)
    await asyncio.to_thread(lib.request_access, worker, pid, True, True)
    await accept(open_server, pid, worker["id"])
    assert (await asyncio.to_thread(lib.submit_task, worker, pid, "a")).status_code == 200
    r = await asyncio.to_thread(lib.submit_task, worker, pid, "b")
    # The library sleeps json.loads(text)["rate_limit_delay"] * 20 and sends again.
    assert r.status_code == 429 and 0 < json.loads(r.text)["rate_limit_delay"] <= 2.0


async def test_refused_registration_says_which_option_or_credential_is_missing(tmp_path):
    server = Server(tmp_path)  # the secure default: only the admin registers workers
    await server.start()
    try:
        lib = PyWorkerLibrary(server.url)
        response = await asyncio.to_thread(lib.post, "/worker/create", {"alias": "drone"})
    finally:
        server.stop()
    assert response.status_code == 401
    # The reply is the library's error shape: a JSON object whose "message" it raises.
    reply = json.loads(response.text)
    assert reply["ok"] is False and "content" not in reply
    assert "--queue-open-registration" in reply["message"]
    assert "Authorization: Bearer" in reply["message"]


async def test_signed_requests_of_earlier_clients_get_a_clear_refusal(open_server):
    lib = PyWorkerLibrary(open_server.url)
    worker = await asyncio.to_thread(lib.make_worker, "drone")
    headers = {"User-Agent": PY_UA, "X-Worker-Id": str(worker["id"]),
               "X-Signature": "0" * 64, "Timestamp": "Mon, 01 Jan 2024 00:00:00 GMT"}  # fmt: skip
    r = await asyncio.to_thread(
        lib.http.get, f"{open_server.url}/task/get/1", headers=headers, timeout=5
    )
    reply = r.json()
    assert r.status_code == 403 and reply["ok"] is False
    assert reply["message"].startswith("secret is not specified") and "X-Secret" in reply["message"]


# -- the Go client of task_tracker's repository (client/client.go), replayed -------------------


def go_request(method: str, url: str, body: Any = None, worker: dict | None = None):
    """As Go's net/http sends it: its own User-Agent, no Content-Type, compact JSON."""
    headers = {"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}
    if worker is not None:
        headers["X-Worker-Id"] = str(worker["id"])
        headers["X-Secret"] = base64.b64encode(worker["secret"]).decode()
    data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
    with requests.Session() as http:
        http.headers.clear()
        return http.request(method, url, data=data, headers=headers, timeout=5)


def go_int(value: Any) -> int:
    """Go's decoder puts only JSON integers (or null) into an int64 field."""
    assert value is None or (isinstance(value, int) and not isinstance(value, bool)), value
    return value or 0


async def test_go_client_register_submit_fetch_release_log(open_server):
    url, run = open_server.url, asyncio.to_thread
    r = await run(go_request, "POST", f"{url}/worker/create", {"alias": "go"})
    w = r.json()["content"]["worker"]
    worker = {"id": go_int(w["id"]), "secret": base64.b64decode(w["secret"], validate=True)}
    pid = await make_project(open_server, assign_rate=0, submit_rate=0)
    access = {"assign": True, "submit": True, "project": pid}
    r = await run(go_request, "POST", f"{url}/project/request_access", access, worker)
    assert r.json()["ok"] is True
    await accept(open_server, pid, worker["id"])

    submit = {"project": pid, "max_retries": 2, "recipe": "go task", "priority": 3,
              "max_assign_time": 60, "hash_u64": 0, "unique_string": "u1",
              "verification_count": 1}  # fmt: skip
    r = await run(go_request, "POST", f"{url}/task/submit", submit, worker)
    assert r.status_code == 200 and r.json()["ok"] is True

    r = await run(go_request, "GET", f"{url}/task/get/{pid}", None, worker)
    reply = r.json()
    assert reply["ok"] is True
    task = reply["content"]["task"]
    for key in ("id", "priority", "assignee", "retries", "max_retries", "status"):
        go_int(task[key])
    for key in ("max_assign_time", "assign_time", "verification_count"):
        go_int(task[key])
    assert task["recipe"] == "go task" and task["assignee"] == worker["id"]
    assert isinstance(task["project"]["assign_rate"], int | float)

    release = {"task_id": task["id"], "result": 0, "verification": 0}
    r = await run(go_request, "POST", f"{url}/task/release", release, worker)
    assert r.json() == {"ok": True, "content": {"updated": True}}

    # Log(WARN): the client needs a JSON reply with ok true, or it returns an error.
    log = {"scope": "task_tracker go client", "message": "m", "timestamp": int(time.time())}
    r = await run(go_request, "POST", f"{url}/log/warn", log, worker)
    assert r.json()["ok"] is True
    # Log(INFO) posts to /log/panic, a route neither task_tracker nor taskd has.
    r = await run(go_request, "POST", f"{url}/log/panic", log, worker)
    assert r.status_code == 404 and r.json()["ok"] is False

    r = await run(go_request, "GET", f"{url}/project/list")
    assert [p["id"] for p in r.json()["content"]["projects"]] == [pid]
