"""One error shape per API family (each registers its own), and the middleware that renders
every error in it.

A client of any family gets JSON in that family's envelope with a 4xx/5xx status, whatever
went wrong: bad JSON, an unknown route, a missing credential, a body over the limit, or a bug
(logged with its traceback, answered without it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from taskd.errors import TaskdError, Unavailable
from taskd.http.jsonio import json_response
from taskd.http.keys import SERVICES
from taskd.log import get_logger

log = get_logger("taskd.api")


@dataclass(frozen=True)
class Envelope:
    """One family's error shape: the paths it covers and how an error is written in it."""

    family: str  # the name ``family_of`` gives its paths
    prefixes: tuple[str, ...] = ()  # paths that start with one of these
    paths: frozenset[str] = frozenset()  # or are exactly one of these
    roots: frozenset[str] = frozenset()  # or whose first segment is one of these
    # (message, details, extra) -> body; None: taskd's own shape (code, message, errors)
    body: Callable[[str, list[str], dict[str, Any]], dict[str, Any]] | None = None
    schema: str = "SundialError"  # its component in the OpenAPI document
    error_form: dict[str, Any] | None = None  # what marks the envelope as an error there


DEFAULT = Envelope("taskd")
ENVELOPES: dict[str, Envelope] = {}
SCHEMAS: dict[str, str] = {DEFAULT.family: DEFAULT.schema}  # family -> OpenAPI component


def register(envelope: Envelope) -> None:
    """Answer errors under ``envelope``'s paths in its shape (each family, at setup)."""
    ENVELOPES[envelope.family] = envelope
    SCHEMAS[envelope.family] = envelope.schema


def envelope_of(path: str) -> Envelope:
    """The envelope of the family a path belongs to, by its prefix."""
    root = path.split("/", 2)[1] if path.count("/") >= 1 else ""
    for envelope in ENVELOPES.values():
        if path.startswith(envelope.prefixes) or path in envelope.paths or root in envelope.roots:
            return envelope
    return DEFAULT


def family_of(path: str) -> str:
    """Which API family a path belongs to, by its prefix."""
    return envelope_of(path).family


def error_body(
    family: str, status: int, code: str, message: str, details: list[str], extra: dict[str, Any]
) -> dict[str, Any]:
    envelope = ENVELOPES.get(family, DEFAULT)
    if envelope.body is not None:
        return envelope.body(message, details, extra)
    body = {"code": code, "message": message}
    if details:
        body["errors"] = details
    return body


def render(request: web.Request, err: TaskdError) -> web.Response:
    family = family_of(request.path)
    body = error_body(family, err.status, err.code, err.message, err.details, err.extra)
    headers = {}
    if err.status == 401:
        # Never "Basic": that challenge makes a browser prompt for (and then cache) a password.
        headers["WWW-Authenticate"] = 'Bearer realm="taskd"'
    if err.status == 503 and "retry_after" in err.extra:
        headers["Retry-After"] = str(err.extra["retry_after"])
    return json_response(body, status=err.status, headers=headers)


HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    408: "request_timeout",
}


def refuse_oversized(request: web.Request) -> None:
    """413 for a declared length over the limit, even where the handler never reads the body.

    aiohttp checks the limit only when a body is read; bodies sent without a length are still
    refused then.
    """
    length, limit = request.content_length, request.app[SERVICES].settings.max_body_bytes
    if length is not None and length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        refuse_oversized(request)
        return await handler(request)
    except TaskdError as err:
        return render(request, err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            message = f"no route {request.method} {request.path}"
        elif exc.status == 405:
            message = f"method {request.method} is not allowed on {request.path}"
        elif exc.status == 413:
            message = "the request body is larger than this server accepts"
        else:
            message = exc.reason or "request refused"
        err = TaskdError(message)
        err.status = exc.status
        err.code = HTTP_CODES.get(exc.status, "error")
        response = render(request, err)
        if "Allow" in exc.headers:  # a 405 names the methods there are (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except ConnectionResetError as exc:
        # The client went away mid-request; nothing to answer.
        raise web.HTTPServiceUnavailable() from exc
    except TimeoutError:
        # Something taskd waited on (Docker, the store) did not answer in time: the client is
        # still there and gets the family's envelope like any other error.
        log.warning("request timed out", method=request.method, path=request.path)
        err = Unavailable("taskd timed out waiting on a backend; try again")
        return render(request, err)
    except Exception:
        log.exception("request failed", method=request.method, path=request.path)
        return render(request, TaskdError("internal error; see the server log"))
