"""Drove's face: one-off container tasks created, watched and killed by operations."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web


def setup(app: web.Application) -> None:
    """Add the family's routes, envelope and OpenAPI part to ``app``."""
    from taskd.containertasks import openapi, routes
    from taskd.http import envelopes
    from taskd.http.openapi import declare

    envelopes.register(routes.ENVELOPE)
    routes.setup(app)
    declare(app, routes.__name__, openapi.PART)
