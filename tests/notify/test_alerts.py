"""Each alert fires once and resolves once, on a real per-second schedule."""

from __future__ import annotations

import asyncio

import pytest

from tests.notify.receivers import Receiver, until
from tests.server import Server


def every(seconds: int) -> dict:
    return {"cron_schedule": {"seconds": f"*/{seconds}", "minutes": "*", "hours": "*",
                              "day_of_month": "*", "month": "*", "day_of_week": "?"}}  # fmt: skip


def scheduled(name: str, script: str, alerts: dict, hook: str, seconds: int = 1) -> dict:
    return {
        "process_definition_name": name,
        "schedule": every(seconds),
        "task_definitions": [{"task_definition_name": "main",
                              "executable": {"shell_script_command": {"script": script}}}],
        "notifications": [{"webhook": {"url": hook, "notify_when": "on_state_change"}}],
        "alerts": alerts,
    }  # fmt: skip


def alerts(recv: Receiver, kind: str) -> list[str]:
    return [h.json["event"] for h in recv.hits if h.json.get("alert") == kind]


async def put(srv: Server, doc: dict) -> None:
    status, body = await srv.request(
        "PUT", f"/api/process_definitions/{doc['process_definition_name']}", json=doc
    )
    assert status == 200, body


async def settle(recv: Receiver, kind: str, want: list[str], seconds: float = 3.0) -> None:
    """Wait for ``want`` and then a while longer: a second firing would show up meanwhile."""
    await until(lambda: alerts(recv, kind) == want or len(alerts(recv, kind)) > len(want),
                within=60)  # fmt: skip
    await asyncio.sleep(seconds)
    assert alerts(recv, kind) == want


@pytest.mark.slow  # about 45 s of real schedules; CI runs it with the slow tests
async def test_every_alert_fires_once_and_resolves_once(tmp_path):
    recv = Receiver()
    await recv.start()
    srv = Server(tmp_path)
    hook = f"{recv.url}/hook"
    try:
        await srv.start()

        # N failures in a row: fires at the second failure, not again at the third, fourth...
        doc = scheduled("failing", "exit 1", {"consecutive_failures": 2}, hook)
        await put(srv, doc)
        await settle(recv, "consecutive_failures", ["alert"])
        doc["task_definitions"][0]["executable"]["shell_script_command"]["script"] = "true"
        await put(srv, doc)
        await settle(recv, "consecutive_failures", ["alert", "alert_resolved"])
        await srv.request("POST", "/api/process_definitions/failing/pause")

        # Dead man: no success for 3 s fires (once); a success resolves it.
        doc = scheduled("silent", "exit 1", {"dead_man_seconds": 3}, hook)
        await put(srv, doc)
        await settle(recv, "dead_man", ["alert"])
        doc["task_definitions"][0]["executable"]["shell_script_command"]["script"] = "true"
        await put(srv, doc)
        await settle(recv, "dead_man", ["alert", "alert_resolved"])
        await srv.request("POST", "/api/process_definitions/silent/pause")

        # Late start: every 2 s, but each run takes 5 s and waits for the one before.
        doc = scheduled("slow", "sleep 5", {"late_start_seconds": 1}, hook, seconds=2)
        await put(srv, doc)
        await settle(recv, "late_start", ["alert"])
        doc["task_definitions"][0]["executable"]["shell_script_command"]["script"] = "true"
        await put(srv, doc)
        await settle(recv, "late_start", ["alert", "alert_resolved"])
        await srv.request("POST", "/api/process_definitions/slow/pause")

        # Longer than usual: a run far over the p95 of the earlier ones.
        doc = scheduled("steady", "true", {"longer_than_usual": True}, hook)
        await put(srv, doc)

        async def successes(n):
            _, runs = await srv.request("GET", "/api/processes/",
                                        params={"process_definition_name": "steady"})  # fmt: skip
            return len([r for r in runs if r["status"] == "succeeded"]) >= n

        await until(lambda: successes(6), within=60)
        doc["task_definitions"][0]["executable"]["shell_script_command"]["script"] = "sleep 2"
        await put(srv, doc)
        await until(lambda: alerts(recv, "longer_than_usual"), within=60)
        doc["task_definitions"][0]["executable"]["shell_script_command"]["script"] = "true"
        await put(srv, doc)
        await settle(recv, "longer_than_usual", ["alert", "alert_resolved"])

        _, body = await srv.request("GET", "/api/process_definitions/steady/notifications")
        assert body["alerts"][0]["kind"] == "longer_than_usual"
        assert body["alerts"][0]["state"] == "resolved"
    finally:
        srv.stop()
        await recv.stop()


async def test_longer_than_usual_fires_while_the_run_is_still_going(tmp_path):
    recv = Receiver()
    await recv.start()
    srv = Server(tmp_path)
    try:
        await srv.start()
        doc = scheduled("hangs", "true", {"longer_than_usual": True}, f"{recv.url}/hook")
        await put(srv, doc)

        async def runs():
            _, found = await srv.request("GET", "/api/processes/",
                                         params={"process_definition_name": "hangs"})  # fmt: skip
            return found

        await until(lambda: _count(runs, "succeeded", 6), within=60)
        doc["task_definitions"][0]["executable"]["shell_script_command"]["script"] = "sleep 60"
        await put(srv, doc)
        await until(lambda: alerts(recv, "longer_than_usual"), within=30)
        newest = (await runs())[0]
        assert newest["status"] == "running"  # said before the run ends, not after
        status, _ = await srv.request("POST", f"/api/processes/{newest['process_id']}/kill")
        assert status in (200, 204)
    finally:
        srv.stop()
        await recv.stop()


async def _count(runs, status: str, n: int) -> bool:
    return len([r for r in await runs() if r["status"] == status]) >= n
