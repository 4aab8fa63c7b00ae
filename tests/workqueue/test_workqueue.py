"""The work queue (task_tracker API) through the real HTTP app: the seed's examples and shapes,
permissions, logs, monitoring and how secrets are kept."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from typing import Any

import pytest

from taskd.http.keys import SERVICES

FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what curl -d sends

TASK_KEYS = {
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
PROJECT_KEYS = {
    "id",
    "priority",
    "name",
    "clone_url",
    "git_repo",
    "version",
    "motd",
    "public",
    "hidden",
    "chain",
    "paused",
    "assign_rate",
    "submit_rate",
}


class Clock:
    """A wall clock the test moves by hand (ns, like ``time.time_ns``)."""

    def __init__(self) -> None:
        self.now = time.time_ns()

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1e9)


class Queue:
    """A small client of the work queue over the test app, for tests to read like a story."""

    def __init__(self, client: Any, admin: dict[str, str]) -> None:
        self.client = client
        self.admin = admin
        self._conns: list[sqlite3.Connection] = []

    @property
    def service(self) -> Any:
        return self.client.server.app[SERVICES].extras["queue"]

    def db(self) -> sqlite3.Connection:
        """A fresh connection to the server's database file, to check what was stored."""
        conn = sqlite3.connect(self.client.server.app[SERVICES].store.path)
        conn.row_factory = sqlite3.Row
        self._conns.append(conn)
        return conn

    def close(self) -> None:
        for conn in self._conns:
            conn.close()

    def fake_clock(self) -> Clock:
        clock = Clock()
        self.service.clock = clock
        return clock

    async def call(self, method: str, path: str, body: Any = None, headers=None) -> tuple:
        data = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
        resp = await self.client.request(method, path, data=data, headers=headers or {})
        return resp.status, await resp.json()

    async def worker(self, alias: str = "worker") -> dict[str, Any]:
        status, body = await self.call("POST", "/worker/create", {"alias": alias}, self.admin)
        assert status == 200, body
        worker = body["content"]["worker"]
        worker["headers"] = {"X-Worker-ID": str(worker["id"]), "X-Secret": worker["secret"]}
        return worker

    async def project(self, name: str = "project", **fields: Any) -> int:
        fields.setdefault("public", True)
        status, body = await self.call(
            "POST", "/project/create", {"name": name, **fields}, self.admin
        )
        assert status == 200, body
        return body["content"]["id"]

    async def grant(self, pid: int, worker: dict, assign: bool = True, submit: bool = True):
        body = {"project": pid, "assign": assign, "submit": submit}
        status, reply = await self.call("POST", "/project/request_access", body, worker["headers"])
        assert status == 200, reply
        status, reply = await self.call(
            "POST", f"/project/accept_request/{pid}/{worker['id']}", headers=self.admin
        )
        assert status == 200, reply

    async def submit(self, worker: dict, pid: int, recipe: str = "r", **task: Any) -> tuple:
        body = {"project": pid, "recipe": recipe, **task}
        return await self.call("POST", "/task/submit", body, worker["headers"])

    async def get(self, worker: dict, pid: int) -> tuple:
        return await self.call("GET", f"/task/get/{pid}", headers=worker["headers"])

    async def take(self, worker: dict, pid: int) -> dict[str, Any]:
        status, body = await self.get(worker, pid)
        assert status == 200 and body["ok"], body
        return body["content"]["task"]

    async def release(self, worker: dict, tid: int, result: int = 0, verification: int = 0):
        body = {"task_id": tid, "result": result, "verification": verification}
        return await self.call("POST", "/task/release", body, worker["headers"])


@pytest.fixture
async def queue(make_client, admin_headers):
    queue = Queue(await make_client(), admin_headers)
    yield queue
    queue.close()


async def test_registering_workers_needs_the_admin_unless_opened(make_client, admin_headers):
    closed = Queue(await make_client(), admin_headers)
    status, body = await closed.call("POST", "/worker/create", '{"alias": "a"}', FORM)
    assert status == 401 and body["ok"] is False and "admin" in body["message"]
    status, _ = await closed.call("POST", "/worker/create", '{"alias": "a"}', admin_headers)
    assert status == 200
    closed.close()


@pytest.fixture
async def open_queue(make_client, admin_headers):
    """A server started with --queue-open-registration, so the seed's examples run verbatim."""
    queue = Queue(await make_client(queue_open_registration=True), admin_headers)
    yield queue
    queue.close()


async def test_the_seeds_curl_examples_work_and_answer_in_its_shapes(open_queue):
    queue = open_queue
    call = queue.call
    status, body = await call("POST", "/worker/create", '{"alias": "some alias"}', FORM)
    assert status == 200 and body["ok"] is True
    worker = body["content"]["worker"]
    assert set(worker) == {"id", "created", "alias", "secret", "paused"}
    assert worker["alias"] == "some alias" and worker["paused"] is False
    assert len(base64.b64decode(worker["secret"], validate=True)) == 32
    assert abs(worker["created"] - time.time()) < 60
    creds = {"X-Worker-ID": str(worker["id"]), "X-Secret": worker["secret"]}

    assert await call("POST", "/worker/update", '{"alias": "another alias"}', creds | FORM) == (
        200,
        {"ok": True},
    )
    status, body = await call("GET", f"/worker/get/{worker['id']}")
    assert status == 200
    assert body["content"]["worker"] == {  # never the secret
        "id": worker["id"],
        "created": worker["created"],
        "alias": "another alias",
        "paused": False,
    }

    project = {
        "name": "My project",
        "priority": 999,
        "clone_url": "http://github.com/test/test",
        "git_repo": "myrepo",
        "version": "1.0",
        "motd": "",
        "public": True,
        "hidden": False,
        "chain": 0,
        "assign_rate": 2,
        "submit_rate": 2,
    }
    status, body = await call("POST", "/project/create", project, queue.admin)
    assert status == 200
    pid = body["content"]["id"]

    access = {"assign": True, "submit": True, "project": pid}
    status, body = await call("POST", "/project/request_access", json.dumps(access), creds | FORM)
    assert (status, body) == (200, {"ok": True})
    await call("POST", f"/project/accept_request/{pid}/{worker['id']}", headers=queue.admin)

    submit = (
        f'{{"project": {pid}, "max_retries": 3, "recipe": "test recipe", "priority": 1, '
        '"max_assign_time": 3600, "hash64": 0, "unique_string": "", "verification_count": 0}'
    )
    assert await call("POST", "/task/submit", submit, creds | FORM) == (200, {"ok": True})

    status, body = await call("GET", f"/task/get/{pid}", headers=creds)
    assert status == 200 and body["ok"] is True
    task = body["content"]["task"]
    assert set(task) == TASK_KEYS
    assert task["assignee"] == worker["id"] and task["retries"] == 0 and task["status"] == 1
    assert task["recipe"] == "test recipe" and task["max_retries"] == 3
    assert task["priority"] == 1 and task["max_assign_time"] == 3600
    assert abs(task["assign_time"] - time.time()) < 60
    assert set(task["project"]) == PROJECT_KEYS
    assert task["project"] == {"id": pid, "paused": False, **project}

    release = f'{{"task_id": {task["id"]}, "result": 0, "verification": -32315129}}'
    status, body = await call("POST", "/task/release", release, creds | FORM)
    assert (status, body) == (200, {"ok": True, "content": {"updated": True}})

    log = '{"scope": "Arbitrary log category", "message": "message", "timestamp": 1559393394}'
    assert await call("POST", "/log/info", log, creds | FORM) == (200, {"ok": True})

    status, body = await call("GET", f"/project/get/{pid}")  # no credentials needed
    assert status == 200 and body == {
        "ok": True,
        "content": {"id": pid, "paused": False, **project},
    }
    status, body = await call("GET", "/project/list")
    assert status == 200 and body["content"]["projects"] == [
        {"id": pid, "paused": False, **project}
    ]


async def test_worker_headers_are_case_insensitive(queue):
    worker = await queue.worker()
    pid = await queue.project()
    headers = {"x-worker-id": str(worker["id"]), "x-secret": worker["secret"]}
    status, body = await queue.call("GET", f"/task/get/{pid}", headers=headers)
    assert (status, body) == (200, {"ok": False, "message": "No task available"})


async def test_higher_priority_first_then_first_in_first_out(queue):
    worker = await queue.worker()
    pid = await queue.project()
    await queue.grant(pid, worker)
    for recipe, priority in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1)]:
        assert (await queue.submit(worker, pid, recipe, priority=priority))[0] == 200
    order = [(await queue.take(worker, pid))["recipe"] for _ in range(5)]
    assert order == ["b", "d", "a", "c", "e"]


async def test_a_batch_lease_hands_out_up_to_count_tasks_in_queue_order(queue):
    worker, other = await queue.worker("a"), await queue.worker("b")
    pid = await queue.project()
    await queue.grant(pid, worker)
    for recipe, priority in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1)]:
        assert (await queue.submit(worker, pid, recipe, priority=priority))[0] == 200
    path = f"/task/get/{pid}?count=3"
    status, body = await queue.call("GET", path, headers=worker["headers"])
    assert status == 200 and body["ok"] and "task" not in body["content"], body
    tasks = body["content"]["tasks"]
    assert [t["recipe"] for t in tasks] == ["b", "d", "a"]
    assert all(set(t) == TASK_KEYS and t["assignee"] == worker["id"] for t in tasks)
    # Leased means leased: another worker gets what is left, and the leases are releasable.
    status, body = await queue.call("GET", path, headers=other["headers"])
    assert [t["recipe"] for t in body["content"]["tasks"]] == ["c", "e"]
    status, body = await queue.call("GET", path, headers=other["headers"])
    assert (status, body) == (200, {"ok": False, "message": "No task available"})
    assert (await queue.release(worker, tasks[0]["id"]))[1]["content"] == {"updated": True}
    # Without count the answer keeps task_tracker's shape.
    assert (await queue.get(worker, pid)) == (200, {"ok": False, "message": "No task available"})


@pytest.mark.parametrize("count", ["0", "101", "many"])
async def test_a_bad_batch_size_is_a_clear_400(queue, count):
    worker = await queue.worker()
    pid = await queue.project()
    status, body = await queue.call(
        "GET", f"/task/get/{pid}?count={count}", headers=worker["headers"]
    )
    assert status == 400 and body["ok"] is False and "count" in body["message"], body


async def test_paused_workers_get_nothing_but_may_still_submit(queue):
    worker = await queue.worker()
    pid = await queue.project()
    await queue.grant(pid, worker)
    assert (await queue.submit(worker, pid))[0] == 200
    set_paused = {"worker": worker["id"], "paused": True}
    assert (await queue.call("POST", "/worker/set_paused", set_paused, queue.admin))[0] == 200
    assert await queue.get(worker, pid) == (
        400,
        {"ok": False, "message": "A manager has paused you"},
    )
    assert (await queue.submit(worker, pid, "second"))[0] == 200
    set_paused["paused"] = False
    await queue.call("POST", "/worker/set_paused", set_paused, queue.admin)
    assert (await queue.take(worker, pid))["recipe"] == "r"


async def test_paused_projects_hand_out_nothing(queue):
    worker = await queue.worker()
    pid = await queue.project()
    await queue.grant(pid, worker)
    await queue.submit(worker, pid)
    await queue.call("POST", f"/project/update/{pid}", {"paused": True}, queue.admin)
    assert await queue.get(worker, pid) == (200, {"ok": False, "message": "No task available"})
    assert (await queue.submit(worker, pid, "more"))[0] == 200  # submitting still works
    await queue.call("POST", f"/project/update/{pid}", {"paused": False}, queue.admin)
    assert (await queue.take(worker, pid))["recipe"] == "r"


async def test_permissions_follow_the_seeds_table(queue):
    owner, stranger = await queue.worker("owner"), await queue.worker("stranger")
    public = await queue.project("public", public=True)
    private = await queue.project("private", public=False)
    hidden = await queue.project("hidden", public=False, hidden=True)
    for pid in (public, private, hidden):
        await queue.grant(pid, owner)
        assert (await queue.submit(owner, pid, f"task of {pid}"))[0] == 200

    # Submitting always needs a SUBMIT grant, even on a public project.
    assert (await queue.submit(stranger, public))[0] == 403
    assert (await queue.submit(stranger, private))[0] == 403
    # Without a grant: assign only from public projects.
    assert (await queue.take(stranger, public))["recipe"] == f"task of {public}"
    assert (await queue.get(stranger, private))[0] == 403
    # A hidden project does not exist for those who hold no grant on it (404, not 403).
    assert await queue.get(stranger, hidden) == (404, {"ok": False, "message": "Project not found"})
    assert (await queue.submit(stranger, hidden))[0] == 404
    assert (await queue.call("GET", f"/project/get/{hidden}"))[0] == 404
    names = [
        p["name"] for p in (await queue.call("GET", "/project/list"))[1]["content"]["projects"]
    ]
    assert names == ["private", "public"]
    # ... but it does for the admin, and a grant lets a worker assign and submit there.
    assert (await queue.call("GET", f"/project/get/{hidden}", headers=queue.admin))[0] == 200
    listed = (await queue.call("GET", "/project/list", headers=queue.admin))[1]["content"]
    assert [p["name"] for p in listed["projects"]] == ["hidden", "private", "public"]
    assert (await queue.take(owner, hidden))["recipe"] == f"task of {hidden}"
    assert (await queue.take(owner, private))["recipe"] == f"task of {private}"

    # Access requests: pending grants nothing; a second request is refused; reject revokes.
    await queue.call(
        "POST", "/project/request_access", {"project": private, "assign": True}, stranger["headers"]
    )
    assert (await queue.get(stranger, private))[0] == 403
    again = await queue.call(
        "POST", "/project/request_access", {"project": private, "assign": True}, stranger["headers"]
    )
    assert again[0] == 400 and again[1]["ok"] is False  # as task_tracker answers it
    status, body = await queue.call("GET", f"/project/access_list/{private}", headers=queue.admin)
    assert status == 200
    accesses = {a["worker"]["id"]: a for a in body["content"]["accesses"]}
    assert accesses[stranger["id"]]["request"] is True and accesses[owner["id"]]["request"] is False
    assert accesses[owner["id"]]["worker"] == {
        "id": owner["id"],
        "created": owner["created"],
        "alias": "owner",
        "paused": False,
    }
    path = f"/project/accept_request/{private}/{stranger['id']}"
    assert (await queue.call("POST", path, headers=queue.admin))[0] == 200
    assert (await queue.submit(owner, private, "second"))[0] == 200
    assert (await queue.take(stranger, private))["recipe"] == "second"
    path = f"/project/reject_request/{private}/{stranger['id']}"
    assert (await queue.call("POST", path, headers=queue.admin))[0] == 200
    assert (await queue.get(stranger, private))[0] == 403


async def test_the_project_secret_is_for_admins_and_workers_with_assign(queue):
    reader, submitter = await queue.worker(), await queue.worker()
    pid = await queue.project(public=False)
    await queue.grant(pid, reader, assign=True, submit=False)
    await queue.grant(pid, submitter, assign=False, submit=True)
    path = f"/project/secret/{pid}"
    assert (await queue.call("POST", path, {"secret": "s3cret"}, reader["headers"]))[0] == 401
    assert (await queue.call("POST", path, {"secret": "s3cret"}, queue.admin))[0] == 200
    expected = (200, {"ok": True, "content": {"secret": "s3cret"}})
    assert await queue.call("GET", path, headers=queue.admin) == expected
    assert await queue.call("GET", path, headers=reader["headers"]) == expected
    assert (await queue.call("GET", path, headers=submitter["headers"]))[0] == 403
    assert (await queue.call("GET", path))[0] == 401
    assert "s3cret" not in json.dumps((await queue.call("GET", f"/project/get/{pid}"))[1])


async def test_worker_logs_are_stored_with_the_seeds_levels(queue):
    worker = await queue.worker()
    for level, at in [("trace", 10), ("info", 11), ("warn", 12), ("error", 13), ("info", 14)]:
        entry = {"scope": "crawl", "message": f"{level} at {at}", "timestamp": at}
        assert await queue.call("POST", f"/log/{level}", entry, worker["headers"]) == (
            200,
            {"ok": True},
        )
    status, body = await queue.call("POST", "/logs", {"level": 5, "since": 10}, queue.admin)
    assert status == 200
    logs = body["content"]["logs"]
    assert [(e["message"], e["timestamp"], e["level"]) for e in logs] == [
        ("info at 11", 11, 5),
        ("info at 14", 14, 5),
    ]
    assert json.loads(logs[0]["data"]) == {"scope": "crawl", "worker": worker["id"]}
    levels = {}
    for level in (3, 4, 7):
        body = (await queue.call("POST", "/logs", {"level": level, "since": 1}, queue.admin))[1]
        levels[level] = [e["message"] for e in body["content"]["logs"]]
    assert levels == {3: ["error at 13"], 4: ["warn at 12"], 7: ["trace at 10"]}
    assert (await queue.call("POST", "/logs", {"level": 5, "since": 1}))[0] == 401


async def test_monitoring_counts_now_and_keeps_snapshots(queue):
    worker, other = await queue.worker(), await queue.worker()
    pid = await queue.project()
    await queue.grant(pid, worker)
    for i in range(4):
        await queue.submit(worker, pid, f"t{i}", max_retries=0, verification_count=2 if i else 0)
    await queue.release(worker, (await queue.take(worker, pid))["id"], 0)  # closed
    await queue.release(worker, (await queue.take(worker, pid))["id"], 1)  # failed
    await queue.release(worker, (await queue.take(worker, pid))["id"], 0, 7)  # awaiting
    await queue.take(other, pid)  # leased: still new
    status, body = await queue.call("GET", f"/project/monitoring/{pid}", headers=queue.admin)
    assert status == 200
    [now] = body["content"]["snapshots"]
    counts = {k: v for k, v in now.items() if k != "time_stamp"}
    assert counts == {
        "new_task_count": 1,
        "failed_task_count": 1,
        "closed_task_count": 1,
        "worker_access_count": 1,
        "awaiting_verification_count": 1,
    }
    assert abs(now["time_stamp"] - time.time()) < 60

    clock = queue.fake_clock()
    clock.advance(-600)
    assert await queue.service.snapshot() == 1
    clock.advance(600)
    status, body = await queue.call(
        "GET", f"/project/monitoring/{pid}?count=5", headers=queue.admin
    )
    live, stored = body["content"]["snapshots"]
    assert stored == {**counts, "time_stamp": live["time_stamp"] - 600}
    window = (
        f"/project/monitoring-between/{pid}?from={stored['time_stamp']}&to={stored['time_stamp']}"
    )
    assert (await queue.call("GET", window, headers=queue.admin))[1]["content"]["snapshots"] == [
        stored
    ]


async def test_stats_and_assignees(queue):
    a, b = await queue.worker("a"), await queue.worker("b")
    pid = await queue.project()
    await queue.grant(pid, a)
    for i in range(3):
        await queue.submit(a, pid, f"t{i}")
    await queue.release(a, (await queue.take(a, pid))["id"])
    await queue.take(a, pid)
    await queue.take(b, pid)
    status, body = await queue.call("GET", "/worker/stats", headers=queue.admin)
    assert status == 200
    assert body["content"]["stats"][:2] == [
        {"alias": "a", "closed_task_count": 1, "paused": False, "id": a["id"]},
        {"alias": "b", "closed_task_count": 0, "paused": False, "id": b["id"]},
    ]
    status, body = await queue.call("GET", f"/project/assignees/{pid}", headers=queue.admin)
    assert sorted(body["content"]["assignees"], key=lambda x: x["worker"]) == [
        {"assignee": "a", "worker": a["id"], "task_count": 1},
        {"assignee": "b", "worker": b["id"], "task_count": 1},
    ]


async def test_worker_secrets_are_stored_only_as_hashes(queue, settings):
    workers = [await queue.worker(f"w{i}") for i in range(5)]
    pid = await queue.project()
    for worker in workers:
        await queue.grant(pid, worker)  # the secret is used a few times
    await queue.client.close()  # checkpoint the WAL into the file, then read every byte
    files = [p for p in settings.db.parent.iterdir() if p.name.startswith(settings.db.name)]
    data = b"".join(p.read_bytes() for p in files)
    assert data
    for worker in workers:
        secret = worker["secret"]
        for form in (secret.encode(), base64.b64decode(secret), secret.rstrip("=").encode()):
            assert form not in data
