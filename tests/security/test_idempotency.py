"""Idempotent submits (edge item 6): a retried create returns the first answer, creates nothing.

Every create of every family is retried with the same ``Idempotency-Key`` against a real
``taskd serve``, also after the server was killed (SIGKILL) and started again: the answer is
the first one, and exactly one thing exists.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys

import aiohttp

from tests.processes.sundial import definition, shell
from tests.security.edge import ADMIN, probing, started

SLEEPER = {"tasks": {"t": {"job": {"command": ["/bin/sleep", "60"]}}}}


def count(srv, table: str, where: str = "1") -> int:
    db = sqlite3.connect(f"file:{srv.db}?mode=ro", uri=True)
    try:
        return db.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0]
    finally:
        db.close()


async def post(http, srv, path, key, headers=ADMIN, **kw):
    async with http.post(f"{srv.url}{path}", headers={**headers, "Idempotency-Key": key},
                         **kw) as resp:  # fmt: skip
        body = await resp.read()
        return resp.status, body, resp.headers


async def test_a_retried_dag_submit_gets_the_first_answer_even_after_a_crash(tmp_path):
    srv = await started(tmp_path, "--max-parallel", "1")
    try:
        async with aiohttp.ClientSession() as http, probing(srv) as probe:
            first = await post(http, srv, "/v1/dagrun", "dag-1", json=SLEEPER)
            assert first[0] == 200
            again = await post(http, srv, "/v1/dagrun", "dag-1", json=SLEEPER)
            assert again[:2] == first[:2] and again[2]["Idempotent-Replayed"] == "true"
            # Five at once with a new key: one run, and no answer but the first one.
            many = await asyncio.gather(
                *(post(http, srv, "/v1/dagrun", "dag-2", json=SLEEPER) for _ in range(5))
            )
            made = {body for status, body, _ in many if status == 200}
            assert len(made) == 1 and all(s in (200, 409) for s, _, _ in many), many
            # The same key with another request is a client's mistake, said clearly.
            other = await post(http, srv, "/v1/dagrun", "dag-1", json={"tag": "x", **SLEEPER})
            assert other[0] == 422 and b"different request" in other[1]
        probe.check()
        assert count(srv, "runs") == 2
        srv.kill9()
        await srv.start()
        async with aiohttp.ClientSession() as http:
            after = await post(http, srv, "/v1/dagrun", "dag-1", json=SLEEPER)
            assert after[:2] == first[:2]
            # Keys are per credential: another admin's key of the same name is its own.
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "taskd", "token", "create", "--db", str(srv.db),
                "--role", "admin", "--name", "second", stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            second = {"Authorization": f"Bearer {(await proc.communicate())[0].decode().strip()}"}
            theirs = await post(http, srv, "/v1/dagrun", "dag-1", headers=second, json=SLEEPER)
            assert theirs[0] == 200 and theirs[1] != first[1]
        assert count(srv, "runs") == 3
        # The answer stored with the create (all a crash leaves) was the one the handler sent.
        assert "answer differs" not in srv.log()
    finally:
        srv.stop()


async def test_drove_create_trigger_and_queue_submit_are_idempotent(tmp_path):
    # One slot, taken by a sleeping DAG: the Drove task queues and no container is made.
    srv = await started(tmp_path, "--max-parallel", "1")
    try:
        async with aiohttp.ClientSession() as http, probing(srv) as probe:
            assert (await post(http, srv, "/v1/dagrun", "slot", json=SLEEPER))[0] == 200

            create = {
                "type": "CREATE",
                "spec": {
                    "sourceAppName": "APP", "taskId": "T1",
                    "executable": {"type": "DOCKER", "url": "taskd-test:latest",
                                   "dockerPullTimeout": "10s"},
                    "resources": [{"type": "CPU", "count": 1},
                                  {"type": "MEMORY", "sizeInMB": 64}],
                    "args": ["sh", "-c", "echo hi"],
                },
                "opSpec": {"timeout": "5m", "parallelism": 1, "failureStrategy": "STOP"},
            }  # fmt: skip
            ops = "/apis/v1/tasks/operations"
            first = await post(http, srv, ops, "drove-1", json=create)
            assert first[0] == 200, first[1]
            again = await post(http, srv, ops, "drove-1", json=create)
            assert again[:2] == first[:2]  # not "Task already exists"

            doc = definition("p", shell("t", "exec sleep 60"), overlap_action="wait")
            async with http.put(f"{srv.url}/api/process_definitions/p", json=doc,
                                headers=ADMIN) as resp:  # fmt: skip
                assert resp.status == 200, await resp.text()
            trig = "/api/process_definitions/p/trigger"
            assert (await post(http, srv, trig, "trigger-1"))[0] == 204
            assert (await post(http, srv, trig, "trigger-1"))[0] == 204

            async with http.post(f"{srv.url}/worker/create", json={"alias": "w"},
                                 headers=ADMIN) as resp:  # fmt: skip
                worker = (await resp.json())["content"]["worker"]
            wh = {"X-Worker-ID": str(worker["id"]), "X-Secret": worker["secret"]}
            async with http.post(f"{srv.url}/project/create", json={"name": "q"},
                                 headers=ADMIN) as resp:  # fmt: skip
                pid = (await resp.json())["content"]["id"]
            access = {"project": pid, "assign": True, "submit": True}
            async with http.post(f"{srv.url}/project/request_access", json=access, headers=wh):
                pass
            async with http.post(f"{srv.url}/project/accept_request/{pid}/{worker['id']}",
                                 headers=ADMIN) as resp:  # fmt: skip
                assert resp.status == 200
            task = {"project": pid, "recipe": "r"}
            sub = await post(http, srv, "/task/submit", "queue-1", headers=wh, json=task)
            assert sub[0] == 200, sub[1]
            assert (await post(http, srv, "/task/submit", "queue-1", headers=wh,
                               json=task))[:2] == sub[:2]  # fmt: skip
            bulk = {"requests": [task, task]}
            assert (await post(http, srv, "/task/bulk_submit", "queue-2", headers=wh,
                               json=bulk))[0] == 200  # fmt: skip
            assert (await post(http, srv, "/task/bulk_submit", "queue-2", headers=wh,
                               json=bulk))[0] == 200  # fmt: skip
        probe.check()
        srv.kill9()
        await srv.start()
        async with aiohttp.ClientSession() as http:
            assert (await post(http, srv, ops, "drove-1", json=create))[:2] == first[:2]
            assert (await post(http, srv, trig, "trigger-1"))[0] == 204
            assert (await post(http, srv, "/task/submit", "queue-1", headers=wh,
                               json=task))[:2] == sub[:2]  # fmt: skip
        assert count(srv, "runs", "kind = 'task'") == 1
        assert count(srv, "runs", "name = 'p'") + count(srv, "triggers") == 1
        assert count(srv, "queue_tasks") == 3
        assert "answer differs" not in srv.log()
    finally:
        srv.stop()
