"""docs/ui.md names every dashboard route, and shows the screenshots it links to."""

from __future__ import annotations

import re
from pathlib import Path

from taskd.app import create_app
from taskd.config import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "ui.md"


def test_every_dashboard_route_is_in_docs_ui_md(tmp_path):
    app = create_app(Settings(db=tmp_path / "t.db", admin_token="x"))
    text = DOC.read_text()
    routes = {
        resource.canonical
        for resource in app.router.resources()
        for route in resource
        if route.handler.__module__.startswith("taskd.web")
    }
    routes -= {"/ui/{tail}"}  # the dashboard's own 404 page
    assert routes, "no dashboard routes found"
    missing = sorted(r for r in routes if f"`{r}`" not in text)
    assert not missing, f"dashboard routes missing from docs/ui.md: {missing}"


def test_the_screenshots_docs_ui_md_shows_exist():
    images = re.findall(r"\]\((ui/[^)]+\.png)\)", DOC.read_text())
    assert images
    assert [i for i in images if not (DOC.parent / i).is_file()] == []
