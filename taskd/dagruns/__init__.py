"""Daggy's face: ad-hoc DAG runs with parameter expansion and generator tasks."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web


def setup(app: web.Application) -> None:
    """Add the family's routes, envelope, OpenAPI part and background work to ``app``."""
    from taskd.dagruns import openapi, routes
    from taskd.http import envelopes
    from taskd.http.openapi import declare

    envelopes.register(routes.ENVELOPE)
    routes.setup(app)
    declare(app, routes.__name__, openapi.PART)
