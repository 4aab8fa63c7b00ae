"""The batch release (``POST /task/bulk_release``) against a real ``taskd serve``: several
results in one request and one commit, all of them or none, and a clear 4xx in the work
queue's envelope for every kind of bad batch."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.server import Server


class Client:
    """Admin and worker calls to one server, for tests to read like a story."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.projects = 0

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session:
            async with session.request(
                method, self.server.url + path, json=body, headers=headers or {}
            ) as resp:
                return resp.status, await resp.json()

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        status, reply = await self.call(method, path, body, self.server.headers)
        assert status == 200, reply
        return reply.get("content")

    async def worker(self, alias: str) -> dict[str, Any]:
        w = (await self.admin("POST", "/worker/create", {"alias": alias}))["worker"]
        return {"id": w["id"], "headers": {"X-Worker-ID": str(w["id"]), "X-Secret": w["secret"]}}

    async def project(self, worker: dict[str, Any], **fields: Any) -> int:
        self.projects += 1
        doc = {"name": f"project {self.projects}", "assign_rate": 0, "submit_rate": 0}
        pid = (await self.admin("POST", "/project/create", {**doc, **fields}))["id"]
        access = {"project": pid, "assign": True, "submit": True}
        status, _ = await self.call("POST", "/project/request_access", access, worker["headers"])
        assert status == 200
        await self.admin("POST", f"/project/accept_request/{pid}/{worker['id']}")
        return pid

    async def submit(self, worker: dict[str, Any], pid: int, count: int, **fields: Any) -> None:
        requests = [{"project": pid, "recipe": f"r{i}", **fields} for i in range(count)]
        status, reply = await self.call(
            "POST", "/task/bulk_submit", {"requests": requests}, worker["headers"]
        )
        assert status == 200, reply

    async def lease(self, worker: dict[str, Any], pid: int, count: int) -> list[int]:
        status, reply = await self.call(
            "GET", f"/task/get/{pid}?count={count}", headers=worker["headers"]
        )
        assert status == 200 and reply["ok"], reply
        return [t["id"] for t in reply["content"]["tasks"]]

    async def bulk_release(self, worker: dict[str, Any], body: Any) -> tuple[int, Any]:
        return await self.call("POST", "/task/bulk_release", body, worker["headers"])

    async def counts(self, pid: int) -> dict[str, int]:
        return (await self.admin("GET", f"/project/monitoring/{pid}?count=1"))["snapshots"][0]


@pytest.fixture
async def client(tmp_path):
    server = Server(tmp_path)
    await server.start()
    yield Client(server)
    server.stop()


def releases(ids: list[int], result: int = 0) -> dict[str, Any]:
    return {"releases": [{"task_id": i, "result": result} for i in ids]}


async def test_a_batch_applies_each_result_and_is_committed_before_the_reply(client):
    w = await client.worker("w")
    pid = await client.project(w)
    await client.submit(w, pid, 6, max_retries=0)
    ids = await client.lease(w, pid, 6)
    body = {
        "releases": [
            {"task_id": ids[0], "result": 0},
            {"task_id": ids[1], "result": 0, "verification": 7},
            {"task_id": ids[2], "result": 1},  # max_retries 0: FAILED at once
            {"task_id": ids[3], "result": 2},  # skipped: free for anyone again
            {"task_id": ids[4], "result": 0},
        ]
    }
    status, reply = await client.bulk_release(w, body)
    assert status == 200, reply
    results = reply["content"]["results"]
    assert [r["task_id"] for r in results] == ids[:5]  # in the order sent
    assert [r["updated"] for r in results] == [True] * 5
    assert "FAILED" in results[2]["message"]
    # Acknowledged means on disk: a SIGKILL right after the reply loses none of it.
    client.server.kill9()
    await client.server.start()
    counts = await client.counts(pid)
    assert counts["closed_task_count"] == 3 and counts["failed_task_count"] == 1
    assert counts["new_task_count"] == 2  # the skipped one and the one not in the batch
    # The skipped task is leasable again; the one left out is still held by w.
    assert await client.lease(w, pid, 5) == [ids[3]]
    status, reply = await client.call(
        "POST", "/task/release", {"task_id": ids[5], "result": 0}, w["headers"]
    )
    assert reply["content"] == {"updated": True}, reply


async def test_a_task_the_worker_does_not_hold_refuses_the_whole_batch(client):
    w, other = await client.worker("w"), await client.worker("other")
    pid = await client.project(w)
    await client.admin("POST", f"/project/update/{pid}", {"public": True})
    await client.submit(w, pid, 5)
    mine = await client.lease(w, pid, 3)
    theirs = await client.lease(other, pid, 1)
    status, reply = await client.bulk_release(w, releases([*mine, theirs[0]]))
    assert status == 409 and reply["ok"] is False, reply
    assert f"releases[3] (task {theirs[0]})" in reply["message"]
    assert "nothing was released" in reply["message"]
    # Nothing was applied: none closed, and w still holds its three.
    assert (await client.counts(pid))["closed_task_count"] == 0
    status, reply = await client.bulk_release(w, releases(mine))
    assert status == 200 and [r["updated"] for r in reply["content"]["results"]] == [True] * 3
    # A lease taken back by the admin is no longer the worker's to release either.
    [last] = await client.lease(w, pid, 1)
    await client.admin("POST", f"/project/reclaim_assigned_tasks/{pid}")
    status, reply = await client.bulk_release(w, releases([last]))
    assert status == 409 and f"task {last}" in reply["message"], reply
    # Nor is a task released already.
    status, reply = await client.bulk_release(w, releases([mine[0]]))
    assert status == 409, reply


async def test_an_unknown_task_is_404_and_nothing_is_applied(client):
    w = await client.worker("w")
    pid = await client.project(w)
    await client.submit(w, pid, 2)
    ids = await client.lease(w, pid, 2)
    status, reply = await client.bulk_release(w, releases([ids[0], 999_999, ids[1]]))
    assert status == 404 and reply["ok"] is False, reply
    assert "releases[1] (task 999999)" in reply["message"]
    assert (await client.counts(pid))["closed_task_count"] == 0


async def test_a_verified_task_reports_per_item_that_it_waits_for_agreement(client):
    w = await client.worker("w")
    pid = await client.project(w)
    await client.submit(w, pid, 1, verification_count=2)
    await client.submit(w, pid, 1)
    ids = await client.lease(w, pid, 2)
    status, reply = await client.bulk_release(w, releases(ids))
    assert status == 200, reply
    verified, plain = sorted(reply["content"]["results"], key=lambda r: r["task_id"])
    assert verified["updated"] is False and "1 of 2 workers agree" in verified["message"]
    assert plain == {"task_id": ids[1] if ids[0] == verified["task_id"] else ids[0],
                     "updated": True}  # fmt: skip


def _many(n: int) -> dict[str, Any]:
    return releases(list(range(1, n + 1)))


BAD = [
    ([], "the request body must be a JSON"),
    ({}, "releases must be a non-empty array"),
    ({"releases": []}, "releases must be a non-empty array"),
    ({"releases": {"task_id": 1}}, "releases must be a non-empty array"),
    (_many(101), "at most 100 tasks in one bulk release, got 101"),
    (releases([5, 6, 5]), "releases[2] names task 5 again (as releases[0])"),
    ({"releases": [{"task_id": 1, "result": 0}, 3]}, "releases[1] must be a JSON object"),
    ({"releases": [{"task_id": 1}]}, "releases[0]: result is required"),
    ({"releases": [{"task_id": 0, "result": 0}]}, "releases[0]: task_id must be between 1"),
    ({"releases": [{"task_id": 1, "result": 3}]}, "releases[0]: result must be between 0 and 2"),
    ({"releases": [{"task_id": "1", "result": 0}]}, "releases[0]: task_id must be an integer"),
]


async def test_a_bad_batch_is_a_clear_400_in_the_queue_envelope(client):
    w = await client.worker("w")
    for body, message in BAD:
        status, reply = await client.bulk_release(w, body)
        assert status == 400, (body, reply)
        assert reply["ok"] is False and message in reply["message"], (body, reply)


async def test_bad_worker_credentials_are_403_as_on_release(client):
    w = await client.worker("w")
    bad = {"X-Worker-ID": str(w["id"]), "X-Secret": "AAAA"}
    status, reply = await client.call("POST", "/task/bulk_release", releases([1]), bad)
    assert status == 403 and reply == {"ok": False, "message": "invalid secret"}
