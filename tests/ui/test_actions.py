"""Actions from the dashboard: kill and retry a run, accept and reject work-queue access requests."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from tests.ui.conftest import shell


def test_kill_and_retry_a_run_from_its_page(dashboard, page):
    dashboard.define("sleeper", shell("nap", "sleep 60"))
    dashboard.trigger("sleeper")
    found = dashboard.wait_processes(
        "sleeper", lambda ps: ps and ps[0]["task"] and ps[0]["task"][0]["status"] == "running"
    )
    run = found[0]["process_id"]
    dashboard.login(page)
    page.goto(f"{dashboard.url}/ui/runs/{run}")
    expect(page.locator("#graph g.node[data-state='running']")).to_have_count(1)
    page.click("button:has-text('Kill')")
    expect(page.locator("#run-state")).to_have_attribute("data-state", "killed", timeout=20_000)
    expect(page.locator("button:has-text('Kill')")).to_have_count(0)
    page.click("button:has-text('Retry failed tasks')")
    expect(page.locator("#graph g.node[data-state='running']")).to_have_count(1, timeout=20_000)
    assert page.locator("#run-state").get_attribute("data-state") == "running"
    expect(page.locator("table.attempts tbody tr")).to_have_count(2)  # the killed one and the retry
    status, _ = dashboard.api("POST", f"/api/processes/{run}/kill")
    assert status == 204


def queue_call(dashboard, path: str, body: dict, headers: dict | None = None) -> dict:
    status, reply = dashboard.api("POST", path, data=json.dumps(body), headers=headers or {})
    assert status == 200, reply
    return json.loads(reply) if isinstance(reply, str) else reply


def test_accept_and_reject_access_requests_on_the_queue_page(dashboard, page, tmp_path):
    project = queue_call(dashboard, "/project/create", {"name": "crawl", "public": True})
    pid = project["content"]["id"]
    workers = []
    for alias in ("alpha", "beta"):
        worker = queue_call(dashboard, "/worker/create", {"alias": alias})["content"]["worker"]
        creds = {"X-Worker-ID": str(worker["id"]), "X-Secret": worker["secret"]}
        queue_call(
            dashboard,
            "/project/request_access",
            {"project": pid, "assign": True, "submit": False},
            creds,
        )
        workers.append(worker)
    dashboard.login(page)
    page.goto(dashboard.url + "/ui/queue")
    requests = page.locator("section:has(h2:has-text('Access requests')) li")
    expect(requests).to_have_count(2)
    assert "alpha" in requests.first.inner_text() and "assign" in requests.first.inner_text()
    dashboard.shot(page, "queue", tmp_path)
    requests.first.locator("button:has-text('Accept')").click()
    expect(requests).to_have_count(1)
    requests.first.locator("button:has-text('Reject')").click()
    expect(page.locator("text=No pending requests.")).to_have_count(1)
    _, access = dashboard.api("GET", f"/project/access_list/{pid}")
    granted = access if isinstance(access, dict) else json.loads(access)
    text = json.dumps(granted)
    assert "alpha" in text and "beta" not in text
