"""The dashboard in a real browser against a real ``taskd serve`` running real jobs."""

from __future__ import annotations

import re
import time

from playwright.sync_api import expect

from tests.ui.conftest import shell

DIAMOND = (
    shell("extract", "sleep 3; echo extracted"),
    shell("left", "sleep 1", after=("extract",)),
    shell("right", "sleep 1", after=("extract",)),
    shell("load", "echo loaded", after=("left", "right")),
)


def test_sign_in_leads_to_the_overview(dashboard, page, tmp_path):
    page.goto(dashboard.url + "/ui/definitions")
    assert "/ui/login" in page.url  # no session: sent to sign in, and back afterwards
    dashboard.shot(page, "login", tmp_path)
    page.fill("#token", "not-a-token")
    page.click("button[type=submit]")
    assert "not an admin or viewer token" in page.inner_text(".error")
    page.fill("#token", dashboard.admin)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/ui/definitions$"))
    cookie = next(c for c in page.context.cookies() if c["name"] == "taskd_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.goto(dashboard.url + "/")
    assert page.inner_text("h1") == "What needs you now"
    for heading in ("Failing definitions", "Running longer than usual", "Today (UTC)"):
        assert page.locator(f"h2:has-text('{heading}')").count() == 1


def test_run_now_draws_the_graph_and_it_turns_green_live(dashboard, page, tmp_path):
    dashboard.define("nightly-etl", *DIAMOND, schedule={"cron_schedule": {
        "minutes": "30", "hours": "2", "day_of_month": "?", "month": "*",
        "day_of_week": "1-5", "timezone": "Europe/Berlin"}})  # fmt: skip
    dashboard.login(page)
    page.goto(dashboard.url + "/ui/definitions")
    row = page.locator("tr[data-definition='nightly-etl']")
    assert "At 02:30, Monday to Friday (Europe/Berlin)" in row.inner_text()
    assert re.search(r"\(in (\d+h )?\d+m \d+s\)", row.locator(".countdown").inner_text())
    row.locator("button:has-text('Run now')").click()
    page.wait_for_url(re.compile(r"/ui/runs/[0-9a-f-]{36}$"))
    page.wait_for_selector("#graph g.node")
    page.evaluate("window.notReloaded = true")
    assert page.locator("#graph g.node").count() == 4
    # The first task sleeps 3 s: the graph is drawn before the run is over.
    assert page.locator("#graph g.node[data-state='succeeded']").count() < 4
    expect(page.locator("#graph g.node[data-state='succeeded']")).to_have_count(4, timeout=30_000)
    page.wait_for_selector("#run-state[data-state='succeeded']")
    assert page.evaluate("window.notReloaded") is True  # updated by events, not a reload
    page.reload()
    page.wait_for_selector("#graph g.node")
    dashboard.shot(page, "run", tmp_path)
    assert page.locator("table.attempts tbody tr").count() == 4
    page.click("#graph g.node:has-text('extract')")  # a node opens its task's logs
    expect(page.locator("#log")).to_contain_text("extracted")
    page.goto(dashboard.url + "/ui/definitions")
    assert page.locator("tr[data-definition='nightly-etl'] .bar.st-succeeded").count() == 1
    dashboard.shot(page, "definitions", tmp_path)


def test_a_running_tasks_logs_follow_live(dashboard, page, tmp_path):
    script = 'for i in $(seq 1 40); do printf "\\033[32mline-%s\\033[0m\\n" $i; sleep 0.2; done'
    dashboard.define("talker", shell("talk", script))
    dashboard.trigger("talker")
    found = dashboard.wait_processes(
        "talker", lambda ps: ps and ps[0]["task"] and ps[0]["task"][0]["status"] == "running"
    )
    attempt = found[0]["task"][0]["task_id"]
    dashboard.login(page)
    page.goto(f"{dashboard.url}/ui/attempts/{attempt}/logs")
    assert page.inner_text("#log-status") == "following live"
    first = page.inner_text("#log")
    assert "line-40" not in first
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#log")).to_contain_text("line-40", timeout=30_000)
    expect(page.locator("#log-status")).to_have_text("finished", timeout=10_000)
    assert page.evaluate("window.notReloaded") is True
    assert page.locator("#log .ansi-green").count() >= 40  # colours rendered, not escapes
    assert "\x1b[" not in page.inner_text("#log")
    page.fill("#log-search", "line-3")
    assert page.inner_text("#log-hits") == "11 matches"  # line-3 and line-30 to line-39
    dashboard.shot(page, "logs", tmp_path)
    with page.expect_download() as download:
        page.click("a:has-text('Download')")
    text = download.value.path().read_text()
    assert "line-1\n" in text.replace("\x1b[0m", "").replace("\x1b[32m", "")


def test_pausing_a_schedule_shows_it_paused(dashboard, page):
    dashboard.define("hourly", shell("a", "true"), schedule={"cron_schedule": {
        "minutes": "0", "hours": "*", "day_of_month": "?", "month": "*", "day_of_week": "*",
        "timezone": "UTC"}})  # fmt: skip
    dashboard.login(page)
    page.goto(dashboard.url + "/ui/definitions")
    row = page.locator("tr[data-definition='hourly']")
    assert row.locator(".countdown").count() == 1
    row.locator("button:has-text('Pause')").click()
    row = page.locator("tr[data-definition='hourly']")
    assert row.get_attribute("data-paused") == "true"
    assert row.locator(".badge.paused").inner_text() == "paused"
    assert row.locator("button:has-text('Resume')").count() == 1
    assert row.locator(".countdown").count() == 0  # a paused schedule has no next fire
    status, body = dashboard.api("GET", "/api/process_definitions/hourly")
    assert status == 200 and body["paused"] is True
    row.locator("button:has-text('Resume')").click()
    assert page.locator("tr[data-definition='hourly']").get_attribute("data-paused") == "false"
    page.goto(dashboard.url + "/ui/definitions/hourly")  # its own page pauses too, and stays
    page.click("#run-one button:has-text('Pause')")
    assert page.url.endswith("/ui/definitions/hourly")
    assert page.locator("h1 .badge.paused").count() == 1


def test_a_failing_definition_appears_on_the_open_overview(dashboard, page, tmp_path):
    dashboard.define("flaky-report", shell("report", "echo boom >&2; exit 3"))
    dashboard.login(page)
    assert "flaky-report" not in page.inner_text("main")
    page.evaluate("window.notReloaded = true")
    dashboard.trigger("flaky-report")
    dashboard.wait_processes("flaky-report", lambda ps: ps and ps[0]["status"] == "failed")
    dashboard.trigger("flaky-report")
    dashboard.wait_processes(
        "flaky-report", lambda ps: len(ps) == 2 and all(p["status"] == "failed" for p in ps)
    )
    expect(page.locator("#failing")).to_contain_text("2 failures in a row", timeout=20_000)
    assert "flaky-report" in page.inner_text("#failing")
    assert page.evaluate("window.notReloaded") is True
    dashboard.shot(page, "overview-failing", tmp_path)
    page.click("#failing a:has-text('flaky-report')")
    page.wait_for_selector("#graph g.node[data-state='failed']")
    assert page.locator("table.attempts").inner_text().count("3") >= 1  # the exit code


def test_runs_list_filters_and_container_and_queue_pages(dashboard, page, tmp_path):
    dashboard.define("lister", shell("a", "true"))
    dashboard.trigger("lister")
    dashboard.wait_processes("lister", lambda ps: ps and ps[0]["status"] == "succeeded")
    dashboard.login(page)
    page.goto(dashboard.url + "/ui/runs?name=lister&family=process")
    rows = page.locator("table.runs tbody tr")
    assert rows.count() == 1 and "succeeded" in rows.inner_text()
    page.select_option("select[name=state]", "failed")
    page.click("button:has-text('Filter')")
    assert "state=failed" in page.url
    assert page.inner_text("table.runs tbody") == "No runs match."
    page.goto(dashboard.url + "/ui/runs")
    dashboard.shot(page, "runs", tmp_path)
    page.goto(dashboard.url + "/ui/containers")
    assert page.inner_text("h1") == "Container tasks"
    page.goto(dashboard.url + "/ui/queue")
    assert page.inner_text("h1") == "Work queue"
    page.goto(dashboard.url + "/ui/runs/00000000-0000-0000-0000-000000000000")
    assert page.inner_text("h1") == "Not found"


def test_phone_width_has_no_sideways_scrolling_page(dashboard, browser, tmp_path):
    context = browser.new_context(viewport={"width": 375, "height": 740}, color_scheme="dark")
    page = context.new_page()
    try:
        dashboard.login(page)
        for path in ("/", "/ui/definitions", "/ui/runs"):
            page.goto(dashboard.url + path)
            wide = page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")
            assert not wide, path  # wide tables scroll inside their own box
        bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert bg == "rgb(13, 17, 23)"  # dark mode follows the system
        page.goto(dashboard.url + "/")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        dashboard.shot(page, "phone-dark", tmp_path)
    finally:
        context.close()


def test_run_one_task_from_the_definition_page(dashboard, page):
    dashboard.define("one-task", *DIAMOND)
    dashboard.login(page)
    page.goto(dashboard.url + "/ui/definitions")
    page.click("tr[data-definition='one-task'] a:has-text('one task')")
    page.wait_for_url(re.compile(r"/ui/definitions/one-task#run-one$"))
    assert "Manual runs only" in page.inner_text("main")
    page.select_option("#task", "load")
    page.click("#run-one button:has-text('Run now')")
    page.wait_for_url(re.compile(r"/ui/runs/[0-9a-f-]{36}$"))
    page.wait_for_selector("#graph g.node")
    expect(page.locator("#run-state")).to_have_attribute("data-state", "succeeded", timeout=20_000)
    assert page.locator("#graph g.node").count() == 1
    # The attempts table follows too (fetched again after changes, no reload).
    expect(page.locator("table.attempts tbody tr td:first-child")).to_have_text(["load"])


def test_a_run_longer_than_its_usual_is_on_the_overview(dashboard, page):
    dashboard.define("steady", shell("work", "true"))
    for n in range(1, 4):
        dashboard.trigger("steady")
        dashboard.wait_processes(
            "steady", lambda ps, n=n: len(ps) == n and all(p["status"] == "succeeded" for p in ps)
        )
    dashboard.define("steady", shell("work", "sleep 30"))  # this time it hangs
    dashboard.trigger("steady")
    found = dashboard.wait_processes("steady", lambda ps: len(ps) == 4 and ps[0]["task"])
    dashboard.login(page)
    slow = page.locator("section:has(h2:has-text('Running longer than usual')) li")
    # Its usual is under a second on a quiet machine; the page shows it once it has run longer
    # (nothing changes meanwhile, so the page is asked again rather than waiting for an event).
    deadline = time.monotonic() + 20
    while not slow.count() and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        page.reload()
    expect(slow).to_contain_text("steady")
    assert "usually" in slow.inner_text()
    dashboard.api("POST", f"/api/processes/{found[0]['process_id']}/kill")


def test_a_large_fan_out_is_one_group_node_that_counts_live(dashboard, page, tmp_path):
    dag = {
        "tag": "fan-out",
        "parameters": {"N": [str(i) for i in range(120)]},
        "tasks": {
            "start": {"job": {"command": ["/bin/sh", "-c", "sleep 1"]}, "children": ["work"]},
            "work": {"job": {"command": ["/bin/echo", "{{N}}"]}, "children": ["end"]},
            "end": {"job": {"command": ["/bin/true"]}},
        },
    }
    status, reply = dashboard.api("POST", "/v1/dagrun", json=dag)
    assert status == 200, reply
    dashboard.login(page)
    page.goto(dashboard.url + "/ui/runs?family=dag&name=fan-out")
    page.click("table.runs a:has-text('fan-out')")
    page.wait_for_selector("#graph g.node")
    assert page.locator("#graph g.node").count() == 3  # start, one group of 120, end
    group = page.locator("#graph g.node:has-text('work [120]')")
    expect(group).to_have_count(1)
    expect(page.locator("#graph g.node:has-text('120 succeeded')")).to_have_count(1, timeout=30_000)
    expect(page.locator("#run-state")).to_have_attribute("data-state", "succeeded", timeout=30_000)
    expect(page.locator("button:has-text('Kill')")).to_have_count(0)  # the page caught up
    expect(page.locator("#graph g.node[data-state='succeeded']")).to_have_count(3)
    dashboard.shot(page, "fan-out", tmp_path, full=False)
