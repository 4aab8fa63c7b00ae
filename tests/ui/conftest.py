"""Browser tests of the dashboard: headless Chromium (Debian's package) driven by Playwright.

Nothing is downloaded at run time: Playwright launches the system's ``chromium``. Without it
these tests are skipped, unless ``TASKD_REQUIRE_BROWSER=1`` is set (CI), in which case they
fail. Screenshots go to ``docs/ui/`` with ``TASKD_UI_SCREENSHOTS=1`` (that is how the ones in
docs/ui.md are made), otherwise to the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server import TOKEN, Server

CHROMIUM = os.environ.get("TASKD_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
DOCS = Path(__file__).resolve().parents[2] / "docs" / "ui"


def browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module.

    Not per session: Playwright's sync API keeps an event loop current on this thread while it
    runs, and the asyncio tests of other modules need the thread to themselves.
    """
    why = browser_missing()
    if why:
        if os.environ.get("TASKD_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TASKD_REQUIRE_BROWSER=1 but {why}", pytrace=False)
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


def run_async(coro: Any) -> Any:
    """Run a coroutine to its end on a thread of its own (Playwright's sync API owns this one's loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class Dashboard:
    """A real ``taskd serve`` with an admin and a viewer token, and helpers to drive it."""

    def __init__(self, server: Server, viewer: str) -> None:
        self.server = server
        self.url = server.url
        self.admin = TOKEN
        self.viewer = viewer

    def api(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        return run_async(self.server.request(method, path, **kw))

    def define(self, name: str, *tasks: dict[str, Any], schedule: Any = None) -> None:
        body = {"process_definition_name": name, "task_definitions": list(tasks)}
        if schedule is not None:
            body["schedule"] = schedule
        status, reply = self.api("PUT", f"/api/process_definitions/{name}", json=body)
        assert status == 200, reply

    def trigger(self, name: str) -> None:
        status, reply = self.api("POST", f"/api/process_definitions/{name}/trigger")
        assert status == 204, reply

    def wait_processes(self, name: str, done: Callable[[list[dict]], bool], within: float = 30):
        deadline = time.monotonic() + within
        while True:
            status, found = self.api("GET", f"/api/processes?process_definition_name={name}")
            assert status == 200, found
            if done(found):
                return found
            assert time.monotonic() < deadline, f"processes of {name}: {found}"
            time.sleep(0.2)

    def login(self, page: Any, token: str | None = None) -> None:
        page.goto(self.url + "/")
        page.fill("#token", token or self.admin)
        page.click("button[type=submit]")
        page.wait_for_selector("h1:has-text('What needs you now')")

    def shot(self, page: Any, name: str, tmp_path: Path, *, full: bool = True) -> Path:
        target = DOCS if os.environ.get("TASKD_UI_SCREENSHOTS") == "1" else tmp_path
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"{name}.png"
        page.screenshot(path=str(path), full_page=full)
        return path


def shell(name: str, script: str, after: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"task_definition_name": name, "executable": {"shell_script_command": {"script": script}},
            "dependencies": [{"task_definition_name": a} for a in after]}  # fmt: skip


def start_dashboard(workdir: Path) -> tuple[Server, str]:
    db = workdir / "taskd.db"
    made = subprocess.run(
        [sys.executable, "-m", "taskd", "token", "create", "--db", str(db), "--role", "viewer",
         "--name", "ui-tests"],
        capture_output=True, text=True, check=True, cwd=workdir,
    )  # fmt: skip
    server = Server(workdir)
    run_async(server.start())
    return server, made.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, browser) -> Iterator[Dashboard]:
    """One server per test module (starting one costs a second)."""
    server, viewer = start_dashboard(tmp_path_factory.mktemp("ui"))
    try:
        yield Dashboard(server, viewer)
    finally:
        server.stop()


@pytest.fixture
def page(browser) -> Iterator[Any]:
    """A fresh browser context (no cookies) at phone-to-laptop width."""
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    context.set_default_timeout(20_000)
    pg = context.new_page()
    yield pg
    context.close()
