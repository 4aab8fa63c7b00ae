"""The dashboard on a big store of finished work (90,000 tasks here; the bench uses 1,000,000)."""

from __future__ import annotations

import re
import shutil

import pytest

from bench.bigstore import cached_store, definition_name
from tests.ui.conftest import Dashboard, start_dashboard

RUNS, TASKS = 3000, 30


@pytest.fixture(scope="module")
def big(tmp_path_factory, browser):
    workdir = tmp_path_factory.mktemp("big")
    shutil.copyfile(cached_store(RUNS, TASKS), workdir / "taskd.db")
    server, viewer = start_dashboard(workdir)
    try:
        yield Dashboard(server, viewer)
    finally:
        server.stop()


def test_the_runs_list_of_a_big_store_pages_and_filters(big, page, tmp_path):
    big.login(page)
    page.goto(big.url + "/ui/runs")
    rows = page.locator("table.runs tbody tr")
    assert rows.count() == 50
    first_page = rows.first.inner_text()
    page.click("a[rel=next]")
    assert re.search(r"before=\d+", page.url)
    assert page.locator("table.runs tbody tr").count() == 50
    assert page.locator("table.runs tbody tr").first.inner_text() != first_page
    name = definition_name(7)
    page.goto(f"{big.url}/ui/runs?name={name}&family=process")
    names = page.locator("table.runs tbody tr td:first-child a").all_inner_texts()
    assert len(names) == 30 and set(names) == {name}  # 3000 runs over 100 definitions
    page.goto(big.url + "/ui/runs?state=failed")
    assert page.inner_text("table.runs tbody") == "No runs match."
    page.goto(big.url + "/ui/runs?since=2000-01-01T00:00&until=2000-01-02T00:00")
    assert page.inner_text("table.runs tbody") == "No runs match."
    page.goto(big.url + "/ui/definitions")
    assert page.locator("tr[data-definition]").count() == 100
    assert page.locator(f"tr[data-definition='{name}'] .strip .bar.st-succeeded").count() == 20
    page.goto(big.url + "/")
    assert "No definition's last run failed." in page.inner_text("main")
