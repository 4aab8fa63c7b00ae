"""The HTTP plumbing every API family shares: middleware, error envelopes, JSON I/O, the
auth guard, idempotency, log streaming and the OpenAPI assembly.

Nothing here knows a family; each family's ``setup(app)`` registers its own routes, envelope,
OpenAPI part and background work (``on_start``).
"""

from __future__ import annotations

from aiohttp import web

STARTERS: web.AppKey[list] = web.AppKey("starters")
STOPPERS: web.AppKey[list] = web.AppKey("stoppers")


def on_start(app: web.Application, start, stop=None) -> None:
    """Let a family start (and stop) its own background service with the app."""
    app.setdefault(STARTERS, []).append(start)
    if stop is not None:
        app.setdefault(STOPPERS, []).append(stop)
