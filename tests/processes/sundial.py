"""Helpers for driving the processes API in tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.conftest import ADMIN

H = {"Authorization": f"Bearer {ADMIN}"}


def store_of(client):
    """The store behind a test client's app, to check what really was written."""
    from taskd.http.keys import SERVICES

    return client.server.app[SERVICES].store


async def sql(client, query: str, *args: Any) -> list[dict[str, Any]]:
    def read(db):
        return [dict(r) for r in db.execute(query, args)]

    return await store_of(client).read(read)


def shell(name: str, script: str, *, deps: list[Any] = (), **extra: Any) -> dict[str, Any]:
    return {
        "task_definition_name": name,
        "dependencies": [
            d if isinstance(d, dict) else {"task_definition_name": d, "success_required": True}
            for d in deps
        ],
        "executable": {"shell_script_command": {"script": script}},
        "max_attempts": extra.pop("max_attempts", 1),
        "backoff_base_seconds": extra.pop("backoff_base_seconds", 0),
        **extra,
    }


def definition(name: str, *tasks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"process_definition_name": name, "task_definitions": list(tasks), **extra}


async def put(client, doc: dict[str, Any]) -> dict[str, Any]:
    resp = await client.put(f"/api/process_definitions/{doc['process_definition_name']}",
                            json=doc, headers=H)  # fmt: skip
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def trigger(client, name: str, task: str | None = None) -> None:
    params = {"task_definition_name": task} if task else {}
    resp = await client.post(f"/api/process_definitions/{name}/trigger", params=params, headers=H)
    assert resp.status == 204, await resp.text()


async def processes(client, name: str | None = None, **params: Any) -> list[dict[str, Any]]:
    if name:
        params["process_definition_name"] = name
    resp = await client.get("/api/processes/", params=params, headers=H)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def wait_for(predicate, within: float = 30.0, every: float = 0.05):
    """Poll an async predicate until it returns something truthy (tests only)."""
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(every)


async def finished_process(client, name: str, count: int = 1, within: float = 30.0):
    async def done():
        found = await processes(client, name)
        if len(found) >= count and all(p["status"] != "running" for p in found):
            return found
        return None

    return await wait_for(done, within)
