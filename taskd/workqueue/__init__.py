"""task_tracker's face: projects of opaque tasks that workers lease, verify and finish."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web


def setup(app: web.Application) -> None:
    """Add the family's routes, envelope, OpenAPI part and background work to ``app``."""
    from taskd.http import envelopes
    from taskd.http.openapi import declare
    from taskd.workqueue import openapi, routes, routes_projects

    envelopes.register(routes.ENVELOPE)
    routes.setup(app)
    for module in (routes, routes_projects):
        declare(app, module.__name__, openapi.PART)
