"""One error shape per API family, and the middleware that renders every error in it.

A client of any family gets JSON in that family's envelope with a 4xx/5xx status, whatever
went wrong: bad JSON, an unknown route, a missing credential, a body over the limit, or a bug
(logged with its traceback, answered without it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from taskd.api.http import json_response
from taskd.api.keys import SERVICES
from taskd.errors import TaskdError, Unavailable

log = structlog.get_logger("taskd.api")

QUEUE_ROOTS = frozenset({"worker", "task", "project", "log", "logs"})


def family_of(path: str) -> str:
    """Which API family a path belongs to, by its prefix."""
    if path.startswith("/apis/"):
        return "drove"
    if path.startswith("/v1/") or path == "/ready":
        return "daggy"
    if path.startswith(("/api/", "/_internal_")):
        return "sundial"
    root = path.split("/", 2)[1] if path.count("/") >= 1 else ""
    if root in QUEUE_ROOTS:
        return "queue"
    return "taskd"


def error_body(
    family: str, status: int, code: str, message: str, details: list[str], extra: dict[str, Any]
) -> dict[str, Any]:
    if family == "drove":
        data: Any = {"validationErrors": details} if details else extra.get("data")
        body = {"status": "FAILED", "message": message}
        if data is not None:
            body["data"] = data
        return body
    if family == "queue":
        body = {"ok": False, "message": message}
        if "rate_limit_delay" in extra:
            body["rate_limit_delay"] = extra["rate_limit_delay"]
        return body
    if family == "daggy":
        body = {"error": message}
        if details:
            body["errors"] = details
        return body
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
