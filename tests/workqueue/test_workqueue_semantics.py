"""Work queue semantics over the real app: verification, leases, retries, de-duplication,
chains, bulk submits and rate limits."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.workqueue.test_workqueue import Queue


@pytest.fixture
async def queue(make_client, admin_headers):
    queue = Queue(await make_client(), admin_headers)
    yield queue
    queue.close()


@pytest.fixture
async def setup(queue):
    """Three workers with full access to one public project."""
    workers = [await queue.worker(f"w{i}") for i in range(3)]
    pid = await queue.project()
    for worker in workers:
        await queue.grant(pid, worker)
    return pid, workers


def status_of(queue: Queue, tid: int) -> tuple:
    row = (
        queue.db()
        .execute(
            "SELECT status, assignee, retries, closed_by FROM queue_tasks WHERE id = ?", (tid,)
        )
        .fetchone()
    )
    return tuple(row)


async def test_two_workers_agreeing_close_a_task_needing_two_verifications(queue, setup):
    pid, (w1, w2, _) = setup
    await queue.submit(w1, pid, verification_count=2)
    task = await queue.take(w1, pid)
    status, body = await queue.release(w1, task["id"], 0, 123)
    assert status == 200 and body["ok"] is True and body["content"] == {"updated": False}
    assert "1 of 2" in body["message"]
    # A worker never gets the same task twice while it waits for verification.
    assert await queue.get(w1, pid) == (200, {"ok": False, "message": "No task available"})
    assert (await queue.take(w2, pid))["id"] == task["id"]
    assert (await queue.release(w2, task["id"], 0, 123))[1]["content"] == {"updated": True}
    assert status_of(queue, task["id"]) == (3, None, 0, w2["id"])


async def test_disagreeing_workers_keep_it_open_until_a_third_agrees(queue, setup):
    pid, (w1, w2, w3) = setup
    await queue.submit(w1, pid, verification_count=2)
    tid = (await queue.take(w1, pid))["id"]
    assert (await queue.release(w1, tid, 0, 123))[1]["content"] == {"updated": False}
    assert (await queue.take(w2, pid))["id"] == tid
    assert (await queue.release(w2, tid, 0, 1))[1]["content"] == {"updated": False}
    assert status_of(queue, tid)[0] == 1
    for worker in (w1, w2):
        assert (await queue.get(worker, pid))[1]["message"] == "No task available"
    assert (await queue.take(w3, pid))["id"] == tid
    assert (await queue.release(w3, tid, 0, 123))[1]["content"] == {"updated": True}
    assert status_of(queue, tid) == (3, None, 0, w3["id"])
    assert not queue.db().execute("SELECT * FROM queue_verifications").fetchall()


async def test_an_expired_lease_returns_the_task_and_refuses_the_late_release(queue, setup):
    pid, (w1, w2, _) = setup
    clock = queue.fake_clock()
    await queue.submit(w1, pid, max_assign_time=10)
    tid = (await queue.take(w1, pid))["id"]
    clock.advance(9)
    assert (await queue.get(w2, pid))[1]["message"] == "No task available"
    clock.advance(1)
    assert (await queue.take(w2, pid))["id"] == tid
    status, body = await queue.release(w1, tid, 0)
    assert status == 200 and body["ok"] is True and body["content"] == {"updated": False}
    assert "lease expired" in body["message"]
    # Even when nobody has taken it yet, an expired lease cannot be released.
    clock.advance(11)
    assert (await queue.release(w2, tid, 1))[1] == body
    assert status_of(queue, tid)[2] == 0  # that refused failure counted nothing
    assert (await queue.take(w1, pid))["id"] == tid
    assert (await queue.release(w1, tid, 0))[1] == {"ok": True, "content": {"updated": True}}


async def test_a_worker_that_never_held_the_task_cannot_release_it(queue, setup):
    pid, (w1, w2, _) = setup
    await queue.submit(w1, pid)
    tid = (await queue.take(w1, pid))["id"]
    status, body = await queue.release(w2, tid, 0)
    assert (status, body["ok"], body["content"]) == (200, True, {"updated": False})
    assert (await queue.release(w1, tid + 1000, 0))[0] == 404
    assert (await queue.release(w1, tid, 0))[1]["content"] == {"updated": True}
    assert (await queue.release(w1, tid, 0))[1]["content"] == {"updated": False}  # once


async def test_max_assign_time_zero_means_the_servers_default_lease(queue, setup):
    pid, (w1, _, _) = setup
    await queue.submit(w1, pid, max_assign_time=0)
    task = await queue.take(w1, pid)
    row = queue.db().execute("SELECT assign_time, lease_expires_at FROM queue_tasks").fetchone()
    assert row[1] - row[0] == 3600 * 10**9
    assert task["max_assign_time"] == 0


async def test_the_sweeper_frees_expired_leases_without_any_request(queue, setup):
    pid, (w1, _, _) = setup
    await queue.submit(w1, pid, max_assign_time=1)
    tid = (await queue.take(w1, pid))["id"]
    assert status_of(queue, tid)[1] == w1["id"]
    deadline = time.monotonic() + 5
    while status_of(queue, tid)[1] is not None:
        assert time.monotonic() < deadline, "the lease was never swept"
        await asyncio.sleep(0.05)
    assert (await queue.call("GET", f"/project/assignees/{pid}", headers=queue.admin))[1][
        "content"
    ] == {"assignees": []}


async def test_failures_past_max_retries_leave_it_failed_until_reset(queue, setup):
    pid, (w1, _, _) = setup
    await queue.submit(w1, pid, max_retries=2)
    tid = (await queue.take(w1, pid))["id"]
    assert (await queue.release(w1, tid, 1))[1] == {"ok": True, "content": {"updated": True}}
    assert status_of(queue, tid)[:3] == (1, None, 1)
    assert (await queue.take(w1, pid))["retries"] == 1
    _status, body = await queue.release(w1, tid, 1)
    assert body["content"] == {"updated": True} and "FAILED" in body["message"]
    assert status_of(queue, tid)[:3] == (2, None, 2)
    assert (await queue.get(w1, pid))[1]["message"] == "No task available"
    path = f"/project/reset_failed_tasks/{pid}"
    assert (await queue.call("POST", path, headers=w1["headers"]))[0] == 401
    assert await queue.call("POST", path, headers=queue.admin) == (
        200,
        {"ok": True, "content": {"affected_tasks": 1}},
    )
    task = await queue.take(w1, pid)
    assert (task["id"], task["retries"], task["status"]) == (tid, 0, 1)


async def test_max_retries_zero_makes_the_first_failure_final(queue, setup):
    pid, (w1, _, _) = setup
    await queue.submit(w1, pid, max_retries=0)
    tid = (await queue.take(w1, pid))["id"]
    await queue.release(w1, tid, 1)
    assert status_of(queue, tid)[:3] == (2, None, 1)


async def test_skip_hands_it_back_untouched(queue, setup):
    pid, (w1, w2, _) = setup
    await queue.submit(w1, pid, max_retries=1)
    tid = (await queue.take(w1, pid))["id"]
    assert (await queue.release(w1, tid, 2))[1] == {"ok": True, "content": {"updated": True}}
    assert status_of(queue, tid)[:3] == (1, None, 0)
    assert (await queue.take(w2, pid))["id"] == tid


async def test_reclaim_and_hard_reset(queue, setup):
    pid, (w1, w2, _) = setup
    for i in range(3):
        await queue.submit(w1, pid, f"t{i}")
    first = await queue.take(w1, pid)
    await queue.release(w1, first["id"])
    held = await queue.take(w1, pid)
    path = f"/project/reclaim_assigned_tasks/{pid}"
    assert (await queue.call("POST", path, headers=queue.admin))[1]["content"] == {
        "affected_tasks": 1
    }
    assert (await queue.take(w2, pid))["id"] == held["id"]
    assert (await queue.release(w1, held["id"]))[1]["content"] == {"updated": False}
    path = f"/project/hard_reset/{pid}"
    assert (await queue.call("POST", path, headers=queue.admin))[1]["content"] == {
        "affected_tasks": 3
    }
    assert (await queue.get(w1, pid))[1]["message"] == "No task available"
    assert (await queue.release(w2, held["id"]))[0] == 404
    project = queue.db().execute("SELECT closed_task_count FROM queue_projects").fetchone()
    assert project[0] == 1  # a hard reset does not count anything as closed


async def test_duplicates_are_refused_per_project(queue, setup):
    pid, (w1, _, _) = setup
    other = await queue.project("other")
    await queue.grant(other, w1)
    assert (await queue.submit(w1, pid, "a", hash64=42))[0] == 200
    status, body = await queue.submit(w1, pid, "b", hash64=42)
    assert status == 400 and body["ok"] is False and "hash64 42" in body["message"]
    assert (await queue.submit(w1, pid, "c", hash_u64=42))[0] == 400  # the code's key name
    assert (await queue.submit(w1, other, "d", hash64=42))[0] == 200  # another project: fine
    assert (await queue.submit(w1, pid, "e", unique_string="http://x/1"))[0] == 200
    assert (await queue.submit(w1, pid, "f", unique_string="http://x/1"))[0] == 400
    assert (await queue.submit(w1, pid, "g", unique_string="http://x/2"))[0] == 200
    status, body = await queue.submit(w1, pid, "h", hash64=7, unique_string="x")
    assert status == 400 and "not both" in body["message"]
    assert (await queue.submit(w1, pid, "i", hash64=0))[0] == 200  # 0: no de-duplication
    assert (await queue.submit(w1, pid, "j", hash64=0))[0] == 200
    count = queue.db().execute("SELECT COUNT(*) FROM queue_tasks WHERE project = ?", (pid,))
    assert count.fetchone()[0] == 5
    # Closing a task frees its hash, as deleting it did in the seed.
    task = await queue.take(w1, pid)
    assert task["recipe"] == "a"
    await queue.release(w1, task["id"])
    assert (await queue.submit(w1, pid, "again", hash64=42))[0] == 200


async def test_a_chained_project_receives_closed_tasks(queue, setup):
    _pid, (w1, _, _) = setup
    target = await queue.project("target")
    await queue.grant(target, w1)
    source = await queue.project("source", chain=target)
    await queue.grant(source, w1)
    await queue.submit(w1, source, "copied", hash64=9, priority=3, max_retries=4)
    await queue.submit(w1, target, "already there", hash64=10)
    await queue.submit(w1, source, "not copied: same hash", hash64=10, priority=1)
    for _ in range(2):
        task = await queue.take(w1, source)
        assert (await queue.release(w1, task["id"]))[1]["content"] == {"updated": True}
    rows = queue.db().execute(
        "SELECT recipe, hash64, priority, max_retries, status FROM queue_tasks "
        "WHERE project = ? ORDER BY id",
        (target,),
    )
    recipes = [tuple(r) for r in rows]
    assert recipes == [("already there", 10, 0, 0, 1), ("copied", 9, 3, 4, 1)]


async def test_bulk_submit_is_all_or_nothing(queue, setup):
    pid, (w1, _, _) = setup
    other = await queue.project("other")

    def bulk(*tasks):
        return queue.call("POST", "/task/bulk_submit", {"requests": list(tasks)}, w1["headers"])

    good = [{"project": pid, "recipe": f"t{i}", "hash64": i + 1} for i in range(5)]
    bad = [*good[:3], {"project": pid, "recipe": ""}, *good[3:]]
    status, body = await bulk(*bad)
    assert status == 400 and "requests[3]" in body["message"]
    status, body = await bulk(*good, {"project": other, "recipe": "x"})
    assert status == 400 and "same project" in body["message"]
    status, body = await bulk(*good, {"project": pid, "recipe": "x", "hash64": 2})
    assert status == 400 and "requests[5]" in body["message"] and "requests[1]" in body["message"]
    assert queue.db().execute("SELECT COUNT(*) FROM queue_tasks").fetchone()[0] == 0
    await queue.submit(w1, pid, "existing", hash64=4)
    status, body = await bulk(*good)
    assert status == 400 and "requests[3]" in body["message"]
    assert queue.db().execute("SELECT COUNT(*) FROM queue_tasks").fetchone()[0] == 1
    assert await bulk(*good[:3], *good[4:]) == (200, {"ok": True})
    assert queue.db().execute("SELECT COUNT(*) FROM queue_tasks").fetchone()[0] == 5


async def test_submit_rate_answers_429_with_a_delay_that_is_right(queue, setup):
    _, (w1, w2, _) = setup
    pid = await queue.project("limited", submit_rate=2)
    await queue.grant(pid, w1)
    await queue.grant(pid, w2)
    # Hammered by several clients at once: one token (task_tracker's burst), then 429s.
    answers = await asyncio.gather(*(queue.submit(w1, pid, f"h{i}") for i in range(8)))
    assert sorted(status for status, _ in answers) == [200] + [429] * 7
    for status, body in answers:
        if status == 429:
            assert set(body) == {"ok", "message", "rate_limit_delay"}
            assert body["ok"] is False and 0 < body["rate_limit_delay"] <= 0.5
    # A client that waits exactly the delay it was given succeeds, every time.
    started, accepted = time.monotonic(), 0
    while accepted < 4:
        status, body = await queue.submit(w2, pid, f"s{accepted}")
        if status == 200:
            accepted += 1
            continue
        assert status == 429
        await asyncio.sleep(body["rate_limit_delay"])
        status, body = await queue.submit(w2, pid, f"s{accepted}")
        assert status == 200, body
        accepted += 1
    assert 1.4 < time.monotonic() - started < 3.0  # 4 tasks at 2 a second


async def test_a_bulk_larger_than_the_burst_is_slowed_down_not_refused_forever(queue, setup):
    _, (w1, _, _) = setup
    pid = await queue.project("limited", submit_rate=2)
    await queue.grant(pid, w1)
    requests = [{"project": pid, "recipe": f"t{i}"} for i in range(5)]
    status, _ = await queue.call("POST", "/task/bulk_submit", {"requests": requests}, w1["headers"])
    assert status == 200
    status, body = await queue.submit(w1, pid)
    assert status == 429 and 2.4 < body["rate_limit_delay"] <= 2.5  # it paid for 5 tokens


async def test_assign_rate_limits_leases_and_an_empty_answer_costs_a_token(queue, setup):
    _, (w1, _, _) = setup
    pid = await queue.project("limited", assign_rate=1)
    await queue.grant(pid, w1)
    # As in task_tracker, asking and finding nothing spends the token too.
    assert (await queue.get(w1, pid))[1]["message"] == "No task available"
    status, body = await queue.get(w1, pid)
    assert status == 429 and 0 < body["rate_limit_delay"] <= 1.0
    await asyncio.sleep(body["rate_limit_delay"])
    await queue.submit(w1, pid)
    await queue.submit(w1, pid)
    await queue.take(w1, pid)
    status, body = await queue.get(w1, pid)
    assert status == 429 and 0 < body["rate_limit_delay"] <= 1.0
    await asyncio.sleep(body["rate_limit_delay"])
    await queue.take(w1, pid)
