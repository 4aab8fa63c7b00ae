"""Every dashboard route wants a session; a viewer's session changes nothing; tokens alone open none."""

from __future__ import annotations

import re

from taskd.auth import issue_token
from taskd.http.keys import SERVICES
from tests.conftest import ADMIN

SAMPLES = {
    "name": "sample",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "project": "1",
    "worker": "1",
    "tail": "nowhere",
    "name:.+": "app.css",
}
OPEN = {("GET", "/ui/login"), ("POST", "/ui/login"), ("GET", "/ui/static/{name}")}


def dashboard_routes(app) -> list[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        if route.method != "HEAD" and route.handler.__module__.startswith("taskd.web"):
            found.add((route.method, route.resource.canonical))
    return sorted(found)


def sample(path: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: SAMPLES[m.group(1)], path)


async def sign_in(client, token: str) -> str:
    resp = await client.post("/ui/login", data={"token": token}, allow_redirects=False)
    assert resp.status == 303
    page = await client.get("/ui/definitions")
    return re.search(r'name="csrf-token" content="([^"]+)"', await page.text()).group(1)


async def test_no_dashboard_route_answers_without_a_session(make_client):
    client = await make_client()
    routes = dashboard_routes(client.server.app)
    assert len(routes) > 20
    bearer = {"Authorization": f"Bearer {ADMIN}"}
    for method, path in routes:
        if (method, path) in OPEN:
            continue
        for headers in ({}, bearer):  # an API token is no session
            resp = await client.request(
                "POST" if method == "*" else method,
                sample(path),
                headers=headers,
                allow_redirects=False,
            )
            body = await resp.text()
            if method == "GET":
                assert resp.status == 303, (method, path, resp.status)
                assert resp.headers["Location"].startswith("/ui/login?next=")
            else:
                assert resp.status == 401, (method, path, resp.status)
            assert "sample" not in body


async def test_a_viewer_session_changes_nothing(make_client):
    client = await make_client()
    viewer = await issue_token(client.server.app[SERVICES].store, "viewer", "ui")
    csrf = await sign_in(client, viewer)
    for method, path in dashboard_routes(client.server.app):
        if method != "POST" or (method, path) in OPEN or path == "/ui/logout":
            continue
        resp = await client.post(sample(path), data={"csrf": csrf}, allow_redirects=False)
        assert resp.status == 403, (path, resp.status)
        assert "may look but not change" in await resp.text()


async def test_bad_query_values_get_a_clear_400_page_not_a_500(make_client):
    client = await make_client()
    await sign_in(client, ADMIN)
    for path in (
        "/?since=yesterday",
        "/ui/runs?before=x",
        "/ui/runs?family=cron",
        "/ui/runs?state=odd",
        "/ui/runs?since=31/01/2026",
        "/ui/containers?before=-1",
        "/ui/attempts/nope/logs/events?after=x",
    ):
        resp = await client.get(path)
        assert resp.status in (400, 404), (path, resp.status)
        assert resp.content_type == "text/html"
