"""taskd's own admin routes: API tokens, the version, a backup download.

They serve the ``taskd`` command-line client (``token list/create/revoke``, ``backup``,
``version``); errors come in the Sundial envelope (``/api/`` paths).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from taskd.auth import digest, issue_token
from taskd.errors import NotFound
from taskd.http.guard import access
from taskd.http.jsonio import json_response, read_json
from taskd.http.keys import SERVICES
from taskd.http.openapi import Part, declare
from taskd.http.openapi import version as server_version
from taskd.http.openapi.schema import STR, Op, arr, enum, obj
from taskd.models import now_ns
from taskd.store import tokens
from taskd.timefmt import iso_ms
from taskd.validate import Doc, Problems

routes = web.RouteTableDef()
ID_LENGTH = 16  # a prefix of the token's sha256: names it without revealing anything


def token_json(row: Any) -> dict[str, Any]:
    return {"id": row["hash"][:ID_LENGTH], "name": row["name"], "role": row["role"],
            "created_at": iso_ms(row["created_at"])}  # fmt: skip


@routes.get("/api/tokens")
@access("admin")
async def list_tokens(request: web.Request) -> web.Response:
    rows = await request.app[SERVICES].store.read(tokens.all_tokens)
    return json_response([token_json(r) for r in rows])


@routes.post("/api/tokens")
@access("admin")
async def create_token(request: web.Request) -> web.Response:
    problems = Problems()
    doc = Doc(await read_json(request, expect=dict), "", problems)
    name = doc.str("name", "", required=True, nonempty=True)
    role = doc.str("role", "viewer")
    if role not in ("viewer", "admin"):
        problems.add("role must be viewer or admin")
    problems.check("invalid token request")
    secret = await issue_token(request.app[SERVICES].store, role, name)
    return json_response({"id": digest(secret)[:ID_LENGTH], "name": name, "role": role,
                          "token": secret}, status=201)  # fmt: skip


@routes.delete("/api/tokens/{id}")
@access("admin")
async def revoke_token(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    prefix = request.match_info["id"]
    if len(prefix) != ID_LENGTH or not all(c in "0123456789abcdef" for c in prefix):
        raise NotFound(f"no token with id {prefix!r}")
    revoked = await svc.store.write(tokens.delete_token, prefix)
    if not revoked:
        raise NotFound(f"no token with id {prefix!r}")
    svc.auth.forget(revoked)
    return web.Response(status=204)


@routes.get("/api/version")
@access("read")
async def version(request: web.Request) -> web.Response:
    return json_response({"version": server_version()})


@routes.get("/api/backup")
@access("admin")
async def backup(request: web.Request) -> web.StreamResponse:
    """A consistent copy of the live database (SQLite backup API), streamed as a file."""
    svc = request.app[SERVICES]
    loop = asyncio.get_running_loop()
    tmp = Path(await loop.run_in_executor(None, tempfile.mkdtemp))
    try:
        copy = tmp / "taskd.db"
        await svc.store.backup(copy)
        resp = web.StreamResponse(headers={
            "Content-Type": "application/vnd.sqlite3",
            "Content-Disposition": f'attachment; filename="taskd-{now_ns() // 10**9}.db"',
        })  # fmt: skip
        await resp.prepare(request)
        with open(copy, "rb") as fh:  # noqa: ASYNC230 (reads go to the executor below)
            while chunk := await loop.run_in_executor(None, fh.read, 1 << 20):
                await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        await loop.run_in_executor(None, shutil.rmtree, tmp, True)


TOKEN = obj({"id": STR, "name": STR, "role": enum("viewer", "admin"), "created_at": STR},
            ["id", "name", "role", "created_at"])  # fmt: skip
OPENAPI = {
    "GET /api/tokens": Op(
        "List API tokens",
        "Never the secrets; `id` names a token.",
        response=arr(TOKEN),
        extension=True,
    ),
    "POST /api/tokens": Op(
        "Create an API token",
        "The secret is in this reply only; only its hash is stored.",
        body=obj(
            {"name": {"type": "string", "minLength": 1}, "role": enum("viewer", "admin")}, ["name"]
        ),
        response=obj(
            {"id": STR, "name": STR, "role": STR, "token": STR}, ["id", "name", "role", "token"]
        ),
        status=201,
        extension=True,
    ),
    "DELETE /api/tokens/{id}": Op(
        "Revoke an API token", path={"id": STR}, status=204, extension=True
    ),
    "GET /api/version": Op(
        "The server's version", response=obj({"version": STR}, ["version"]), extension=True
    ),
    "GET /api/backup": Op(
        "Download a consistent copy of the database",
        response={"type": "string", "format": "binary"},
        response_type="application/vnd.sqlite3",
        extension=True,
    ),
}


def setup(app: web.Application) -> None:
    app.add_routes(routes)
    about = "API tokens, the version, a backup download."
    declare(app, __name__, Part("admin", "Administration", about, OPENAPI))
