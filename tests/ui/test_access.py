"""Who may change what from the dashboard: viewers look only; forged or cross-site posts fail."""

from __future__ import annotations

from tests.ui.conftest import shell

MUTATING = ("Run now", "Pause", "Resume", "Kill", "Retry failed tasks", "Accept", "Reject")


def buttons(page) -> list[str]:
    return [b.strip() for b in page.locator("main button").all_inner_texts()]


def test_a_viewer_sees_every_page_but_no_button_that_changes_anything(dashboard, page):
    dashboard.define("viewed", shell("slow", "sleep 30"))
    dashboard.trigger("viewed")
    running = dashboard.wait_processes("viewed", lambda ps: ps and ps[0]["task"])
    dashboard.login(page, dashboard.viewer)
    assert page.inner_text(".role") == "viewer"
    page.goto(dashboard.url + "/ui/definitions")
    assert page.locator("tr[data-definition='viewed']").count() == 1
    run_path = f"/ui/runs/{running[0]['process_id']}"
    for path in ("/", "/ui/definitions", "/ui/runs", run_path, "/ui/containers", "/ui/queue"):
        page.goto(dashboard.url + path)
        assert page.locator("main h1").count() == 1, path
        shown = buttons(page)
        assert not [b for b in shown if b in MUTATING], (path, shown)
    # The viewer's own session and CSRF token still cannot change anything.
    csrf = page.get_attribute("meta[name=csrf-token]", "content")
    for action in ("/ui/definitions/viewed/pause", "/ui/definitions/viewed/run",
                   f"{run_path}/kill"):  # fmt: skip
        reply = page.request.post(dashboard.url + action, form={"csrf": csrf}, max_redirects=0)
        assert reply.status == 403, action
    _, body = dashboard.api("GET", "/api/process_definitions/viewed")
    assert body["paused"] is False
    dashboard.api("POST", f"/api/processes/{running[0]['process_id']}/kill")


def test_forged_posts_and_cookie_only_api_calls_are_refused(dashboard, page):
    dashboard.define("guarded", shell("a", "true"))
    dashboard.login(page)  # an admin session
    url = dashboard.url
    csrf = page.get_attribute("meta[name=csrf-token]", "content")
    # No CSRF token, a wrong one, or the right one from another site: all refused.
    for form, headers in (({}, {}), ({"csrf": "forged"}, {}),
                          ({"csrf": csrf}, {"Origin": "http://evil.example"})):  # fmt: skip
        reply = page.request.post(f"{url}/ui/definitions/guarded/pause", form=form,
                                  headers=headers, max_redirects=0)  # fmt: skip
        assert reply.status == 403, (form, headers)
    assert dashboard.api("GET", "/api/process_definitions/guarded")[1]["paused"] is False
    # The JSON API ignores the session cookie: it still wants a bearer token.
    for method, path in (("GET", "/api/process_definitions"),
                         ("POST", "/api/process_definitions/guarded/pause")):  # fmt: skip
        reply = page.request.fetch(url + path, method=method, max_redirects=0)
        assert reply.status == 401, (method, path)
    assert dashboard.api("GET", "/api/process_definitions/guarded")[1]["paused"] is False
    # The right token from this page does work, and signing out ends the session.
    reply = page.request.post(f"{url}/ui/definitions/guarded/pause", form={"csrf": csrf},
                              max_redirects=0)  # fmt: skip
    assert reply.status == 303
    assert dashboard.api("GET", "/api/process_definitions/guarded")[1]["paused"] is True
    page.goto(url + "/ui/definitions")
    page.click("button:has-text('Sign out')")
    page.goto(url + "/ui/definitions")
    assert "/ui/login" in page.url


def test_sign_in_from_another_site_and_open_redirects_are_refused(dashboard, page):
    url = dashboard.url
    reply = page.request.post(f"{url}/ui/login", form={"token": dashboard.admin, "next": "/"},
                              headers={"Origin": "http://evil.example"}, max_redirects=0)  # fmt: skip
    assert reply.status == 403
    assert not [c for c in page.context.cookies() if c["name"] == "taskd_session"]
    reply = page.request.post(f"{url}/ui/login", max_redirects=0,
                              form={"token": dashboard.admin, "next": "//evil.example/x"})  # fmt: skip
    assert reply.status == 303 and reply.headers["location"] == "/"
