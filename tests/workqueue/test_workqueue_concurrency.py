"""Sixteen workers draining five thousand tasks at once over HTTP: nobody ever holds a task
another worker holds, and every task is closed exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.workqueue.test_workqueue import Queue

TASKS = 5000
WORKERS = 16


async def test_sixteen_workers_drain_five_thousand_tasks_exactly_once(make_client, admin_headers):
    queue = Queue(await make_client(), admin_headers)
    pid = await queue.project()
    submitter = await queue.worker("submitter")
    await queue.grant(pid, submitter)
    for start in range(0, TASKS, 1000):
        requests = [
            {"project": pid, "recipe": f"task {i}", "priority": i % 3}
            for i in range(start, start + 1000)
        ]
        status, body = await queue.call(
            "POST", "/task/bulk_submit", {"requests": requests}, submitter["headers"]
        )
        assert status == 200, body
    workers = [await queue.worker(f"w{i}") for i in range(WORKERS)]

    held: dict[int, int] = {}  # task -> worker holding it right now, as the workers see it
    overlaps: list[tuple[int, int, int]] = []
    leased: list[int] = []
    closed: Counter[int] = Counter()

    async def work(worker: dict) -> None:
        while True:
            status, body = await queue.get(worker, pid)
            assert status == 200, body
            if not body["ok"]:
                assert body["message"] == "No task available"
                return
            task = body["content"]["task"]
            assert task["assignee"] == worker["id"]
            if task["id"] in held:
                overlaps.append((task["id"], held[task["id"]], worker["id"]))
            held[task["id"]] = worker["id"]
            leased.append(task["id"])
            status, body = await queue.release(worker, task["id"], 0)
            assert (status, body) == (200, {"ok": True, "content": {"updated": True}}), body
            del held[task["id"]]
            closed[task["id"]] += 1

    await asyncio.gather(*(work(worker) for worker in workers))

    assert overlaps == []
    assert len(leased) == TASKS and len(set(leased)) == TASKS
    assert set(closed.values()) == {1} and len(closed) == TASKS
    db = queue.db()
    try:
        rows = db.execute(
            "SELECT status, COUNT(*), COUNT(closed_by), COUNT(assignee) FROM queue_tasks "
            "GROUP BY status"
        )
        assert [tuple(row) for row in rows] == [(3, TASKS, TASKS, 0)]
        assert db.execute("SELECT closed_task_count FROM queue_projects").fetchone()[0] == TASKS
        per_worker = {
            row[0]: row[1]
            for row in db.execute(
                "SELECT id, closed_task_count FROM queue_workers WHERE alias != 'submitter'"
            )
        }
        assert sum(per_worker.values()) == TASKS
        assert all(count > 0 for count in per_worker.values())  # they really ran side by side
        # Each worker's count is what it closed itself, in the task rows.
        rows = db.execute("SELECT closed_by, COUNT(*) FROM queue_tasks GROUP BY closed_by")
        assert {row[0]: row[1] for row in rows} == per_worker
    finally:
        queue.close()
