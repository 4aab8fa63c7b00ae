"""Whatever a client sends, the work queue answers in its envelope with a 4xx, never a 500."""

from __future__ import annotations

import json

import pytest

from tests.workqueue.test_workqueue import Queue

BIG = 2**63  # one past the largest SQLite integer
HUGE = "99999999999999999999999"
TASK = {"project": "{public}", "recipe": "r"}
RELEASE = {"task_id": "{task}", "result": 0}

# (method, path, credentials, body, status). Credentials: "worker" (granted on every
# project), "admin", "none", "bad-secret", "bad-id", "not-base64", "unknown", "paused".
# Paths and bodies may use {public} {private} {hidden} {task} {worker}.
CASES = [
    # workers
    ("POST", "/worker/create", "none", {"alias": "a"}, 401),
    ("POST", "/worker/create", "worker", {"alias": "a"}, 401),
    ("POST", "/worker/create", "admin", "not json", 400),
    ("POST", "/worker/create", "admin", "[]", 400),
    ("POST", "/worker/create", "admin", {"alias": 5}, 400),
    ("POST", "/worker/create", "admin", {"alias": "x" * 5000}, 400),
    ("POST", "/worker/update", "none", {"alias": "a"}, 401),
    ("POST", "/worker/update", "bad-secret", {"alias": "a"}, 401),
    ("POST", "/worker/update", "bad-id", {"alias": "a"}, 401),
    ("POST", "/worker/update", "not-base64", {"alias": "a"}, 401),
    ("POST", "/worker/update", "unknown", {"alias": "a"}, 401),
    ("POST", "/worker/update", "huge-id", {"alias": "a"}, 401),
    ("POST", "/worker/update", "worker", {}, 400),
    ("POST", "/worker/update", "worker", {"alias": None}, 400),
    ("GET", "/worker/get/abc", "none", None, 400),
    ("GET", "/worker/get/0", "none", None, 400),
    ("GET", f"/worker/get/{HUGE}", "none", None, 400),
    ("GET", "/worker/get/999", "none", None, 404),
    ("POST", "/worker/set_paused", "worker", {"worker": 1, "paused": True}, 401),
    ("POST", "/worker/set_paused", "admin", {"paused": True}, 400),
    ("POST", "/worker/set_paused", "admin", {"worker": "1", "paused": True}, 400),
    ("POST", "/worker/set_paused", "admin", {"worker": 1, "paused": "yes"}, 400),
    ("POST", "/worker/set_paused", "admin", {"worker": 999, "paused": True}, 404),
    ("GET", "/worker/stats", "none", None, 401),
    ("GET", "/worker/stats?limit=x", "admin", None, 400),
    # submit
    ("POST", "/task/submit", "none", TASK, 401),
    ("POST", "/task/submit", "bad-secret", TASK, 401),
    ("POST", "/task/submit", "worker", "", 400),
    ("POST", "/task/submit", "worker", "{", 400),
    ("POST", "/task/submit", "worker", "null", 400),
    ("POST", "/task/submit", "worker", [], 400),
    ("POST", "/task/submit", "worker", {"recipe": "r"}, 400),
    ("POST", "/task/submit", "worker", {"project": "1", "recipe": "r"}, 400),
    ("POST", "/task/submit", "worker", {"project": 0, "recipe": "r"}, 400),
    ("POST", "/task/submit", "worker", {"project": -1, "recipe": "r"}, 400),
    ("POST", "/task/submit", "worker", {"project": BIG, "recipe": "r"}, 400),
    ("POST", "/task/submit", "worker", {"project": 1.5, "recipe": "r"}, 400),
    ("POST", "/task/submit", "worker", {"project": True, "recipe": "r"}, 400),
    ("POST", "/task/submit", "worker", {"project": 999, "recipe": "r"}, 404),
    ("POST", "/task/submit", "worker", {"project": "{public}"}, 400),
    ("POST", "/task/submit", "worker", {"project": "{public}", "recipe": ""}, 400),
    ("POST", "/task/submit", "worker", {"project": "{public}", "recipe": 5}, 400),
    ("POST", "/task/submit", "worker", {**TASK, "max_retries": -1}, 400),
    ("POST", "/task/submit", "worker", {**TASK, "max_retries": 1.5}, 400),
    ("POST", "/task/submit", "worker", {**TASK, "priority": True}, 400),
    ("POST", "/task/submit", "worker", {**TASK, "priority": BIG}, 400),
    ("POST", "/task/submit", "worker", {**TASK, "hash64": "x"}, 400),
    ("POST", "/task/submit", "worker", {**TASK, "hash64": 2**70}, 400),
    ("POST", "/task/submit", "worker", {**TASK, "hash64": 1, "hash_u64": 2}, 400),
    ("POST", "/task/submit", "worker", {**TASK, "unique_string": 5}, 400),
    ("POST", "/task/submit", "worker", {**TASK, "max_assign_time": -5}, 400),
    ("POST", "/task/submit", "worker", {**TASK, "max_assign_time": BIG}, 400),
    ("POST", "/task/submit", "worker", {**TASK, "verification_count": -1}, 400),
    ("POST", "/task/submit", "worker", {**TASK, "hash64": 1, "unique_string": "u"}, 400),
    ("POST", "/task/submit", "worker", {**TASK, "hash64": 77}, 400),  # as task_tracker
    ("POST", "/task/submit", "other", TASK, 403),
    ("POST", "/task/submit", "other", {"project": "{hidden}", "recipe": "r"}, 404),
    # bulk submit
    ("POST", "/task/bulk_submit", "worker", {}, 400),
    ("POST", "/task/bulk_submit", "worker", {"requests": []}, 400),
    ("POST", "/task/bulk_submit", "worker", {"requests": {"project": 1}}, 400),
    ("POST", "/task/bulk_submit", "worker", {"requests": [1]}, 400),
    ("POST", "/task/bulk_submit", "worker", {"requests": 5}, 400),
    ("POST", "/task/bulk_submit", "worker", {"requests": "x" * 100}, 400),
    ("POST", "/task/bulk_submit", "worker", {"requests": [TASK] * 99 + [[]]}, 400),
    ("POST", "/task/bulk_submit", "worker", {"requests": [TASK, None]}, 400),
    ("POST", "/task/bulk_submit", "worker", {"requests": [TASK] * 10_001}, 400),
    ("POST", "/task/bulk_submit", "none", {"requests": [TASK]}, 401),
    # assign
    ("GET", "/task/get/{public}", "none", None, 403),  # task_tracker: 403 here
    ("GET", "/task/get/{public}", "bad-secret", None, 403),
    ("GET", "/task/get/{public}", "paused", None, 400),
    ("GET", "/task/get/abc", "worker", None, 400),
    ("GET", "/task/get/0", "worker", None, 400),
    ("GET", "/task/get/-1", "worker", None, 400),
    ("GET", f"/task/get/{HUGE}", "worker", None, 400),
    ("GET", "/task/get/999", "worker", None, 404),
    ("GET", "/task/get/{hidden}", "other", None, 404),
    ("GET", "/task/get/{private}", "other", None, 403),
    ("POST", "/task/get/{public}", "worker", None, 405),
    # release
    ("POST", "/task/release", "none", {"task_id": "{task}", "result": 0}, 403),
    ("POST", "/task/release", "worker", {"result": 0}, 400),
    ("POST", "/task/release", "worker", {"task_id": "x", "result": 0}, 400),
    ("POST", "/task/release", "worker", {"task_id": 0, "result": 0}, 400),
    ("POST", "/task/release", "worker", {"task_id": BIG, "result": 0}, 400),
    ("POST", "/task/release", "worker", {"task_id": "{task}"}, 400),
    ("POST", "/task/release", "worker", {"task_id": "{task}", "result": 3}, 400),
    ("POST", "/task/release", "worker", {"task_id": "{task}", "result": -1}, 400),
    ("POST", "/task/release", "worker", {**RELEASE, "verification": "x"}, 400),
    ("POST", "/task/release", "worker", {**RELEASE, "verification": BIG}, 400),
    ("POST", "/task/release", "worker", {"task_id": 999_999, "result": 0}, 404),
    # logs
    ("POST", "/log/info", "none", {"scope": "s", "message": "m", "timestamp": 1}, 401),
    ("POST", "/log/info", "worker", {"message": "m", "timestamp": 1}, 400),
    ("POST", "/log/info", "worker", {"scope": "s", "message": "", "timestamp": 1}, 400),
    ("POST", "/log/info", "worker", {"scope": "s", "message": "m", "timestamp": 0}, 400),
    ("POST", "/log/info", "worker", {"scope": "s", "message": "m", "timestamp": "now"}, 400),
    ("POST", "/log/debug", "worker", {"scope": "s", "message": "m", "timestamp": 1}, 404),
    ("POST", "/logs", "worker", {"level": 5, "since": 1}, 401),
    ("POST", "/logs", "admin", {"since": 1}, 400),
    ("POST", "/logs", "admin", {"level": "info", "since": 1}, 400),
    ("POST", "/logs", "admin", {"level": 5, "since": -1}, 400),
    # projects
    ("POST", "/project/create", "none", {"name": "n"}, 401),
    ("POST", "/project/create", "worker", {"name": "n"}, 401),
    ("POST", "/project/create", "admin", {}, 400),
    ("POST", "/project/create", "admin", {"name": ""}, 400),
    ("POST", "/project/create", "admin", {"name": "n", "priority": -1}, 400),
    ("POST", "/project/create", "admin", {"name": "n", "public": True, "hidden": True}, 400),
    ("POST", "/project/create", "admin", {"name": "n", "public": "yes"}, 400),
    ("POST", "/project/create", "admin", {"name": "n", "chain": 999}, 400),
    ("POST", "/project/create", "admin", {"name": "n", "chain": BIG}, 400),
    ("POST", "/project/create", "admin", {"name": "n", "submit_rate": -1}, 400),
    ("POST", "/project/create", "admin", {"name": "n", "assign_rate": "fast"}, 400),
    ("POST", "/project/create", "admin", {"name": "n", "assign_rate": 1e300}, 400),
    ("POST", "/project/create", "admin", {"name": "public"}, 409),
    ("POST", "/project/update/abc", "admin", {"name": "n"}, 400),
    ("POST", "/project/update/999", "admin", {"name": "n"}, 404),
    ("POST", "/project/update/{public}", "admin", {"chain": "{public}"}, 400),
    ("POST", "/project/update/{public}", "admin", {"hidden": True}, 400),
    ("POST", "/project/update/{public}", "admin", {"name": "private"}, 409),
    ("POST", "/project/update/{public}", "admin", "[1]", 400),
    ("GET", "/project/get/abc", "none", None, 400),
    ("GET", "/project/get/999", "none", None, 404),
    ("GET", "/project/get/{hidden}", "none", None, 404),
    ("GET", "/project/get/{hidden}", "worker", None, 404),
    ("POST", "/project/request_access", "none", {"project": "{private}", "assign": True}, 401),
    ("POST", "/project/request_access", "other", {"project": "{private}"}, 400),
    ("POST", "/project/request_access", "other", {"project": 999, "assign": True}, 404),
    ("POST", "/project/request_access", "other", {"project": "{private}", "assign": 1}, 400),
    ("POST", "/project/request_access", "worker", {"project": "{private}", "assign": True}, 400),
    ("POST", "/project/accept_request/{private}/999", "admin", None, 404),
    ("POST", "/project/accept_request/{private}/x", "admin", None, 400),
    ("POST", "/project/accept_request/{private}/{worker}", "worker", None, 401),
    ("POST", "/project/reject_request/999/{worker}", "admin", None, 404),
    ("GET", "/project/access_list/999", "admin", None, 404),
    ("GET", "/project/access_list/{public}", "none", None, 401),
    ("GET", "/project/assignees/999", "admin", None, 404),
    ("POST", "/project/reset_failed_tasks/999", "admin", None, 404),
    ("POST", "/project/reclaim_assigned_tasks/{public}", "none", None, 401),
    ("POST", "/project/hard_reset/{public}", "worker", None, 401),
    ("GET", "/project/monitoring/{public}?count=abc", "admin", None, 400),
    ("GET", "/project/monitoring/{public}?count=0", "admin", None, 400),
    ("GET", "/project/monitoring/{public}?count=1000", "admin", None, 400),
    ("GET", "/project/monitoring/999", "admin", None, 404),
    ("GET", "/project/monitoring-between/{public}", "admin", None, 400),
    ("GET", "/project/monitoring-between/{public}?from=5&to=1", "admin", None, 400),
    ("GET", f"/project/monitoring-between/{{public}}?from=1&to={HUGE}", "admin", None, 400),
    ("GET", "/project/secret/{public}", "none", None, 401),
    ("GET", "/project/secret/{private}", "other", None, 403),
    ("GET", "/project/secret/{hidden}", "other", None, 404),
    ("GET", "/project/secret/999", "admin", None, 404),
    ("POST", "/project/secret/{public}", "admin", {"secret": 5}, 400),
    ("POST", "/project/secret/999", "admin", {"secret": "s"}, 404),
    ("GET", "/project/nothing", "admin", None, 404),
]  # fmt: skip


@pytest.fixture
async def world(make_client, admin_headers):
    queue = Queue(await make_client(), admin_headers)
    worker, other, paused = [await queue.worker(n) for n in ("worker", "other", "paused")]
    ids = {
        "public": await queue.project("public", public=True),
        "private": await queue.project("private", public=False),
        "hidden": await queue.project("hidden", public=False, hidden=True),
        "worker": worker["id"],
    }
    for pid in ("public", "private", "hidden"):
        await queue.grant(ids[pid], worker)
    await queue.grant(ids["public"], paused)
    await queue.call(
        "POST", "/worker/set_paused", {"worker": paused["id"], "paused": True}, admin_headers
    )
    await queue.submit(worker, ids["public"], "dup", hash64=77)
    ids["task"] = (await queue.take(worker, ids["public"]))["id"]
    secret = worker["secret"]
    headers = {
        "worker": worker["headers"],
        "other": other["headers"],
        "paused": paused["headers"],
        "admin": admin_headers,
        "none": {},
        "bad-secret": {**worker["headers"], "X-Secret": other["secret"]},
        "bad-id": {"X-Worker-ID": "abc", "X-Secret": secret},
        "huge-id": {"X-Worker-ID": HUGE, "X-Secret": secret},
        "not-base64": {**worker["headers"], "X-Secret": "%%% not base64 ü"},
        "unknown": {"X-Worker-ID": "999", "X-Secret": secret},
    }
    yield queue, ids, headers
    queue.close()


def fill(value, ids):
    """Put the world's ids in place of "{name}" placeholders in a body."""
    if isinstance(value, str) and value[1:-1] in ids and value[0] + value[-1] == "{}":
        return ids[value[1:-1]]
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    return value


@pytest.mark.parametrize(("method", "path", "who", "body", "expected"), CASES)
async def test_bad_requests_get_a_4xx_in_the_queue_envelope(
    world, method, path, who, body, expected
):
    queue, ids, headers = world
    data = body if isinstance(body, str) or body is None else json.dumps(fill(body, ids))
    resp = await queue.client.request(method, path.format(**ids), headers=headers[who], data=data)
    reply = await resp.json()
    assert resp.status == expected, reply
    assert reply["ok"] is False and isinstance(reply["message"], str) and reply["message"]
    assert set(reply) <= {"ok", "message", "rate_limit_delay"}


async def test_a_body_over_the_limit_is_413_in_the_envelope(make_client, admin_headers):
    queue = Queue(await make_client(max_body_bytes=1000), admin_headers)
    resp = await queue.client.post("/worker/create", data="x" * 5000, headers=admin_headers)
    assert resp.status == 413
    assert (await resp.json())["ok"] is False
