"""Dashboard sign-in: a token is exchanged for a session cookie; forms carry a CSRF token.

Sessions live in memory (a restart signs everyone out) keyed by the sha256 of the cookie's
random value, so the secret is kept nowhere in clear. The cookie is HttpOnly and
SameSite=Strict, and every state-changing form also carries the session's CSRF token, which
is compared in constant time. The JSON API never looks at this cookie: it still wants a bearer
token, so a page (or a forged form elsewhere) cannot call it with the session.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web

from taskd.errors import Forbidden, TaskdError

COOKIE = "taskd_session"
IDLE = 12 * 3600.0  # seconds a session lasts without use
LIMIT = 1000  # sessions kept at most; the least recently used go first


@dataclass
class Session:
    """One signed-in browser."""

    role: str  # admin | viewer
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    seen: float = field(default_factory=time.time)
    last_visit: float = field(default_factory=lambda: time.time() - 86400)  # of the overview

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Sessions:
    """The signed-in browsers of this server."""

    def __init__(self) -> None:
        self._by_hash: dict[str, Session] = {}

    @staticmethod
    def _key(value: str) -> str:
        return hashlib.sha256(value.encode()).hexdigest()

    def create(self, role: str) -> tuple[str, Session]:
        """A new session; returns the cookie value (given to the browser only)."""
        if len(self._by_hash) >= LIMIT:
            oldest = min(self._by_hash, key=lambda k: self._by_hash[k].seen)
            del self._by_hash[oldest]
        value = secrets.token_urlsafe(32)
        session = self._by_hash[self._key(value)] = Session(role)
        return value, session

    def get(self, request: web.Request) -> Session | None:
        value = request.cookies.get(COOKIE)
        if not value:
            return None
        key = self._key(value)
        session = self._by_hash.get(key)
        if session is None:
            return None
        now = time.time()
        if now - session.seen > IDLE:
            del self._by_hash[key]
            return None
        session.seen = now
        return session

    def drop(self, request: web.Request) -> None:
        value = request.cookies.get(COOKIE)
        if value:
            self._by_hash.pop(self._key(value), None)


SESSIONS: web.AppKey[Sessions] = web.AppKey("web_sessions", Sessions)
SESSION: web.RequestKey[Session] = web.RequestKey("web_session", Session)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def set_cookie(response: web.StreamResponse, value: str, request: web.Request) -> None:
    response.set_cookie(
        COOKIE,
        value,
        httponly=True,
        samesite="Strict",
        path="/",
        secure=request.secure,
        max_age=int(IDLE),
    )


def same_origin(request: web.Request) -> bool:
    """False when the browser says the request comes from another site."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return origin.split("://", 1)[-1] == request.host


async def check_csrf(request: web.Request, session: Session) -> None:
    sent = request.headers.get("X-CSRF-Token")
    if sent is None:
        form = await request.post()
        sent = form.get("csrf")
    if not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf):
        raise Forbidden("the form's CSRF token is missing or wrong; reload the page")
    if not same_origin(request):
        raise Forbidden("this form was sent from another site")


def page(*, admin: bool = False) -> Callable[[Handler], Handler]:
    """A dashboard route: needs a session (admin for ``admin``); POSTs need the CSRF token.

    The API guard sees these routes as public: the session is checked here instead.
    """

    def mark(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            from taskd.web.render import error_page

            session = request.app[SESSIONS].get(request)
            if session is None:
                if request.method == "GET":
                    raise web.HTTPSeeOther(f"/ui/login?next={quote(request.path_qs, safe='')}")
                return await error_page(request, 401, "Sign in first.")
            try:
                if admin and not session.is_admin:
                    raise Forbidden("a viewer may look but not change anything")
                if request.method != "GET":
                    await check_csrf(request, session)
                request[SESSION] = session
                return await handler(request)
            except TaskdError as err:
                return await error_page(request, err.status, str(err))

        wrapped.taskd_access = "public"  # type: ignore[attr-defined]
        return wrapped

    return mark


def public(handler: Handler) -> Handler:
    """A dashboard route anyone may open (sign-in, static files)."""
    handler.taskd_access = "public"  # type: ignore[attr-defined]
    return handler


def context(request: web.Request, **values: Any) -> dict[str, Any]:
    """What every template gets: the session's role and CSRF token."""
    session = request.get(SESSION)
    return {
        "session": session,
        "csrf": session.csrf if session else "",
        "is_admin": bool(session and session.is_admin),
        "path": request.path,
        **values,
    }
