"""Small helpers every handler uses: JSON in and out (orjson), typed query parsing."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from taskd.errors import BadRequest, UnsupportedMediaType
from taskd.http.keys import SERVICES

JSON = "application/json"
INT64_MAX = 2**63 - 1  # what SQLite (and so every id, count and limit here) can hold


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None):
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type=JSON,
        headers=headers,
    )


async def read_json(
    request: web.Request, *, expect: type | None = None, in_thread: bool = False
) -> Any:
    """The request body as JSON; a clear 400 when it is not JSON (or not of ``expect``).

    A request that carries credentials a browser sends by itself must say its body is JSON:
    a cross-site page can post ``text/plain`` or a form with them, never ``application/json``.
    An uncredentialed Daggy request (``--daggy-anonymous``) holds the same power and may not
    come with a type such a page could send either. ``in_thread``: decode in a thread, for
    bodies of megabytes that would hold the event loop.
    """
    refused = not json_typed(request) and ambient_credentials(request)
    if not refused and "Authorization" not in request.headers:
        refused = daggy_anonymous(request) and cross_site_sendable(request)
    if refused:
        sent = request.content_type if "Content-Type" in request.headers else "no content type"
        raise UnsupportedMediaType(
            f"send the body as application/json, not {sent}: a request a web page could make "
            "a browser send is not taken from credentials it did not choose"
        )
    raw = await request.read()
    if not raw.strip():
        raise BadRequest("the request body is empty; JSON was expected")
    try:
        data = await asyncio.to_thread(orjson.loads, raw) if in_thread else orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if expect is not None and not isinstance(data, expect):
        kind = {dict: "an object", list: "an array"}.get(expect, expect.__name__)
        raise BadRequest(f"the request body must be a JSON {kind}")
    return data


def query_int(
    request: web.Request,
    name: str,
    default: int | None = None,
    *,
    minimum: int = 0,
    maximum: int = INT64_MAX,
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise BadRequest(f"query parameter {name} must be at least {minimum}")
    if value > maximum:
        raise BadRequest(f"query parameter {name} must be at most {maximum}")
    return value


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise BadRequest(f"query parameter {name} must be true or false, got {raw!r}")


def json_typed(request: web.Request) -> bool:
    """Whether the request says its body is JSON (``application/json`` or ``*/*+json``)."""
    if "Content-Type" not in request.headers:
        return False
    kind = request.content_type
    return kind == JSON or (kind.startswith("application/") and kind.endswith("+json"))


# What a cross-site page can make a browser send without asking the server first (CORS).
CROSS_SITE_TYPES = frozenset(
    {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}
)


def cross_site_sendable(request: web.Request) -> bool:
    return "Content-Type" not in request.headers or request.content_type in CROSS_SITE_TYPES


def daggy_anonymous(request: web.Request) -> bool:
    """Whether this request is Daggy's and taskd takes such requests without credentials."""
    from taskd.http.envelopes import family_of  # envelopes imports this module

    settings = request.app[SERVICES].settings
    return settings.daggy_anonymous and family_of(request.path) == "daggy"


def ambient_credentials(request: web.Request) -> bool:
    """Whether the request carries credentials a browser adds by itself (cached Basic, cookies).

    Such a request may have been made by any web page the user visits; one with a Bearer token
    or a work queue secret cannot have been, since a page must ask first (CORS) to send those
    headers, and taskd never says yes.
    """
    scheme = request.headers.get("Authorization", "").partition(" ")[0].lower()
    if scheme == "basic":
        return True
    explicit = scheme == "bearer" or "X-Secret" in request.headers
    return "Cookie" in request.headers and not explicit
