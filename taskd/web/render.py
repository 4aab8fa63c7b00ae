"""Templates, static files and error pages of the dashboard."""

from __future__ import annotations

import functools
import hashlib
import mimetypes
from pathlib import Path
from typing import Any

from aiohttp import web

from taskd.web import words
from taskd.web.session import context, public

HERE = Path(__file__).parent
STATIC = HERE / "static"


@functools.cache
def templates() -> Any:
    """The pages' template environment, made when the first page is asked for: a server
    nobody browses never loads the template engine."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=jinja2.select_autoescape(default=True),
    )
    env.filters.update(
        duration=words.duration, stamp=words.stamp, schedule_words=words.schedule_words
    )
    env.globals["static"] = static_url
    return env


def render(request: web.Request, name: str, status: int = 200, **values: Any) -> web.Response:
    text = templates().get_template(name).render(context(request, **values))
    return web.Response(
        text=text, status=status, content_type="text/html", headers=SECURITY_HEADERS
    )


async def error_page(request: web.Request, status: int, message: str) -> web.Response:
    return render(request, "error.html", status=status, status_code=status, message=message)


# Pages run only their own scripts and styles, and are never framed (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    # Not "no-referrer": with it browsers send "Origin: null" on the pages' own forms, and the
    # origin check could no longer tell them from another site's. Other sites get no referrer.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_FILES: dict[str, tuple[bytes, str, str]] = {}


def _load_static() -> None:
    for path in STATIC.rglob("*"):
        if path.is_file() and path.suffix in (".js", ".css", ".svg", ".png"):
            data = path.read_bytes()
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            _FILES[path.relative_to(STATIC).as_posix()] = (
                data,
                ctype,
                hashlib.sha256(data).hexdigest()[:12],
            )


def static_url(name: str) -> str:
    """The URL of a static file, versioned by its content so browsers may cache it for long."""
    if not _FILES:
        _load_static()
    return f"/ui/static/{name}?v={_FILES[name][2]}"


@public
async def static_file(request: web.Request) -> web.Response:
    if not _FILES:
        _load_static()
    found = _FILES.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    data, ctype, _ = found
    return web.Response(
        body=data,
        content_type=ctype,
        headers={
            "Cache-Control": "public, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )
