"""Sundial's face: process definitions on cron or continuous schedules, their processes, and
the task callbacks (log entries, metadata, succeed, fail)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web


def setup(app: web.Application) -> None:
    """Add the family's routes, envelope, OpenAPI part and background work to ``app``."""
    from taskd.http import envelopes
    from taskd.http.openapi import declare
    from taskd.processes import callbacks, openapi, routes

    envelopes.register(routes.ENVELOPE)
    routes.setup(app)
    callbacks.setup(app)
    declare(app, routes.__name__, openapi.PART)
