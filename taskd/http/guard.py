"""Who may call what. Every route declares its access level; undeclared routes need admin.

Levels: ``public`` (anyone), ``read`` (a viewer or admin token), ``admin``, ``task`` (admin, or
the task token of the attempt named by the route's ``task_id``). Worker routes of the work
queue are ``public`` here and authenticate workers themselves (X-Worker-ID / X-Secret).

Browsers: a token comes as ``Authorization: Bearer``, which no cross-site page can make a
browser send. HTTP Basic, which browsers cache and replay on their own, is accepted only on
Drove's routes (its clients send it), no reply ever asks a browser to prompt for it, and
requests carrying such ambient credentials must send JSON as JSON (see ``read_json``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from taskd.auth import Principal
from taskd.errors import Forbidden, Unauthorized
from taskd.http.envelopes import family_of
from taskd.http.keys import SERVICES

H = TypeVar("H", bound=Callable[..., Awaitable[web.StreamResponse]])
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
LEVELS = ("public", "read", "admin", "task")


def access(level: str) -> Callable[[H], H]:
    assert level in LEVELS, level

    def mark(handler: H) -> H:
        handler.taskd_access = level  # type: ignore[attr-defined]
        return handler

    return mark


def presented_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip() or None
    if scheme == "basic" and family_of(request.path) == "drove":
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        # Drove clients send admin:<token>; any user name is accepted with a valid token.
        return password or (user or None)
    return None


def daggy_hint(request: web.Request) -> str:
    """How a Daggy client, which sends no credentials, is let in."""
    if family_of(request.path) != "daggy" or request.headers.get("Authorization"):
        return ""
    return (
        "; Daggy clients that send none are accepted only when taskd is started with"
        " --daggy-anonymous (or TASKD_DAGGY_ANONYMOUS=1)"
    )


def drove_default_hint(request: web.Request) -> str:
    """Why Drove's stock ``admin:admin`` is refused, and the option that accepts it."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or family_of(request.path) != "drove":
        return ""
    try:
        sent = base64.b64decode(value.strip()).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""
    if sent != "admin:admin":
        return ""
    return (
        "; Drove's default admin:admin is not accepted: its password must be taskd's admin"
        " token, so start taskd with --admin-token admin (or TASKD_ADMIN_TOKEN=admin) to"
        " accept it"
    )


async def principal_of(request: web.Request) -> Principal:
    cached = request.get(PRINCIPAL)
    if cached is None:
        cached = await request.app[SERVICES].auth.identify(presented_token(request))
        request[PRINCIPAL] = cached
    return cached


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    match = request.match_info
    if match.http_exception is not None:  # unknown route or method: let it answer 404/405
        return await handler(request)
    level = getattr(match.handler, "taskd_access", "admin")
    if level == "public":
        return await handler(request)
    who = await principal_of(request)
    # Daggy has no authentication; a caller who sends no credential at all is let in when
    # that was opted into (a wrong credential is still refused).
    open_daggy = request.app[SERVICES].settings.daggy_anonymous
    uncredentialed = "Authorization" not in request.headers
    if open_daggy and uncredentialed and family_of(request.path) == "daggy":
        return await handler(request)
    if level == "read" and who.can_read:
        return await handler(request)
    if who.is_admin:
        return await handler(request)
    if level == "task" and who.role == "task" and who.attempt_uuid == match.get("task_id"):
        return await handler(request)
    if who.role == "ended_task":
        raise Unauthorized(
            "this task token belongs to an attempt that has finished; it no longer works"
        )
    if who.role == "anonymous":
        if family_of(request.path) == "drove":
            raise Unauthorized(
                "credentials required: send 'Authorization: Bearer <token>' "
                "(or HTTP Basic admin:<token>)" + drove_default_hint(request)
            )
        raise Unauthorized(
            "credentials required: send 'Authorization: Bearer <token>' "
            "(HTTP Basic is accepted only on Drove's /apis/ routes)" + daggy_hint(request)
        )
    raise Forbidden("these credentials may not do this")


# Sent with every reply: nothing taskd serves may be framed, sniffed, cached or leak a referrer.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CSP_API = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
CSP_PAGE = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; " \
    "base-uri 'none'; form-action 'none'"  # fmt: skip


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    page = response.content_type == "text/html"
    headers.setdefault("Content-Security-Policy", CSP_PAGE if page else CSP_API)
    headers.setdefault("Cache-Control", "no-store")


def install(app: web.Application) -> None:
    """Security headers on every reply, errors and streams included."""
    app.on_response_prepare.append(add_security_headers)
