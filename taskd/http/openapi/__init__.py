"""The OpenAPI 3.1 document of every route, and the API reference page rendered from it.

The document is built from the app's router (what is really served, with each handler's
access level) joined with the part each family declares at setup (``declare``): its
operations, keyed like its routes, its schemas, and the title of its tag. A route without a
declaration is left out, and ``tests/core/test_openapi.py`` fails on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from aiohttp import web

from taskd.http import envelopes
from taskd.http.guard import access
from taskd.http.jsonio import json_response
from taskd.http.openapi.schema import STR, Op, arr, obj, ref

routes = web.RouteTableDef()

ENVELOPES = envelopes.SCHEMAS  # family of a path (envelopes.family_of) -> its error envelope
ERROR_TEXT = {
    400: "The request is invalid (every problem is listed)",
    401: "No valid credentials were sent",
    403: "These credentials may not do this",
    404: "Not found",
    409: "Conflicts with the current state (or the same Idempotency-Key is still in flight)",
    413: "The body is larger than the server accepts",
    422: "This Idempotency-Key was already used with a different request",
    429: "Rate limited: retry after `rate_limit_delay` seconds",
    504: "The operation did not finish in time; it goes on",
}
SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "taskd's admin token, or a viewer's read-only token.",
    },
    "basicAuth": {
        "type": "http",
        "scheme": "basic",
        "description": "HTTP Basic with the admin token as the password (`admin:<token>`),"
        " as Drove clients send it.",
    },
    "taskToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "`TASKD_TASK_TOKEN`, given to every attempt: authorises the callbacks"
        " of that attempt only (the `task_id` in the path).",
    },
    "workerId": {"type": "apiKey", "in": "header", "name": "X-Worker-ID",
                 "description": "A work-queue worker's id (with X-Secret)."},
    "workerSecret": {"type": "apiKey", "in": "header", "name": "X-Secret",
                     "description": "The worker's secret, from its creation reply."},
}  # fmt: skip
ADMIN = [{"bearerAuth": []}, {"basicAuth": []}]
WORKER = [{"workerId": [], "workerSecret": []}]
SECURITY = {
    "public": [],
    "optional": [{}, *ADMIN],
    "read": ADMIN,
    "admin": ADMIN,
    "task": [*ADMIN, {"taskToken": []}],
    "worker": WORKER,
    "admin-or-worker": [*ADMIN, *WORKER],
}
ERROR_SCHEMAS = {  # taskd's own error shape; each family declares its envelope's schema
    "SundialError": obj(
        {"code": STR, "message": STR, "errors": arr(STR)},
        ["code", "message"],
        description="Errors under /api, /_internal_ and taskd's own routes.",
    ),
}
PARAM = re.compile(r"\{([^}:]+)\}")


@dataclass(frozen=True)
class Part:
    """What one family (or part of taskd) declares for the document."""

    name: str  # the prefix of its operation ids
    title: str  # its tag
    description: str
    operations: dict[str, Op]  # "METHOD /path" -> what the route takes and answers
    schemas: dict[str, Any] = field(default_factory=dict)


PARTS: web.AppKey[dict[str, Part]] = web.AppKey("openapi_parts", dict)


def declare(app: web.Application, module: str, part: Part) -> None:
    """Document the routes whose handlers live in ``module`` with ``part``."""
    app.setdefault(PARTS, {})[module] = part


def build(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the app's routes."""
    decls = app.get(PARTS, {})
    schemas: dict[str, Any] = dict(ERROR_SCHEMAS)
    for part in decls.values():
        schemas.update(part.schemas)
    paths: dict[str, dict[str, Any]] = {}
    used_tags: dict[str, str] = {}
    for resource in app.router.resources():
        path = resource.canonical
        for route in resource:
            method = route.method
            module = getattr(route.handler, "__module__", "")
            if method == "HEAD" or module not in decls:
                continue
            part = decls[module]
            ops = part.operations
            decl = ops.get(f"{method} {path}") or ops.get(f"{method} {path.rstrip('/')}")
            if decl is None:
                continue
            family = part.name
            level = getattr(route.handler, "taskd_access", "admin")
            op_id = f"{family}_{route.handler.__name__}"
            if path.endswith("/") and path != "/":
                op_id += "_slash"
            tag = part.title
            used_tags[tag] = part.description
            op = operation(decl, path, op_id, tag, family, level)
            if getattr(route.handler, "taskd_idempotent", False):
                keyed(op, path)
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "taskd",
            "version": version(),
            "summary": "A self-hosted job scheduler: four API families over one core.",
            "description": "Every error is JSON in its family's envelope with a 4xx/5xx status."
            " Unknown routes answer 404; bodies over the configured limit 413.",
        },
        "tags": [{"name": n, "description": d} for n, d in used_tags.items()],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
    }


def version() -> str:
    try:
        return metadata.version("taskd")
    except metadata.PackageNotFoundError:
        return "0"


def operation(decl: Op, path: str, op_id: str, tag: str, family: str, level: str) -> dict:
    auth = decl.auth or level
    out: dict[str, Any] = {"operationId": op_id, "tags": [tag], "summary": decl.summary}
    if decl.description:
        out["description"] = decl.description
    params = [
        {"name": name, "in": "path", "required": True, "schema": decl.path.get(name, STR)}
        for name in PARAM.findall(path)
    ]
    for name, schema in decl.query.items():
        param = {"name": name, "in": "query", "required": name in decl.required_query,
                 "schema": schema}  # fmt: skip
        if schema.get("type") == "array":
            param["explode"] = True
        params.append(param)
    if params:
        out["parameters"] = params
    if decl.body is not None:
        content = {"application/json": {"schema": decl.body}}
        if decl.form is not None:
            content["application/x-www-form-urlencoded"] = {"schema": decl.form}
        out["requestBody"] = {"required": decl.body_required, "content": content}
    ok: dict[str, Any] = {"description": "OK" if decl.status != 204 else "Done; no content"}
    if decl.response is not None:
        ok["content"] = {decl.response_type: {"schema": decl.response}}
    if decl.links:
        ok["links"] = {
            name: {**link, "operationId": f"{family}_{link['operationId']}"}
            for name, link in decl.links.items()
        }
    out["responses"] = {str(decl.status): ok, **errors(decl, path, auth)}
    for status, meaning in decl.also.items():
        out["responses"][str(status)] = {**ok, "description": meaning}
    out["security"] = SECURITY[auth]
    out["x-taskd-access"] = auth
    if decl.extension:
        out["x-taskd-extension"] = True
    return out


def keyed(op: dict[str, Any], path: str) -> None:
    """A create that honours ``Idempotency-Key``: the header, and the answers it adds."""
    op.setdefault("parameters", []).append({
        "name": "Idempotency-Key", "in": "header", "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        "description": "A retried request with the same key gets the first answer (with"
        " `Idempotent-Replayed: true`) and creates nothing; keys are kept for"
        " `--idempotency-window`.",
    })  # fmt: skip
    envelope = envelopes.envelope_of(path)
    schema = ref(envelope.schema)
    if envelope.error_form is not None:
        schema = {"allOf": [schema, envelope.error_form]}
    for code in (409, 422):
        op["responses"].setdefault(str(code), {
            "description": ERROR_TEXT[code],
            "content": {"application/json": {"schema": schema}},
        })  # fmt: skip


def errors(decl: Op, path: str, auth: str) -> dict[str, Any]:
    envelope = envelopes.envelope_of(path)
    schema = ref(envelope.schema)
    if envelope.error_form is not None:
        schema = {"allOf": [schema, envelope.error_form]}
    codes = set(decl.errors)
    if decl.body is not None or decl.query or PARAM.search(path):
        codes.add(400)
    if decl.body is not None:
        codes.add(413)
    if PARAM.search(path) or decl.body is not None:  # bodies name things too
        codes.add(404)
    if auth not in ("public", "optional"):
        codes.update((401, 403))
    out = {}
    for code in sorted(codes):
        reply: dict[str, Any] = {
            "description": ERROR_TEXT.get(code, "Error"),
            "content": {"application/json": {"schema": schema}},
        }
        if code == 401:
            reply["headers"] = {"WWW-Authenticate": {"schema": STR}}
        out[str(code)] = reply
    return out


# -- routes -------------------------------------------------------------------------------

CACHE: web.AppKey[dict[str, Any]] = web.AppKey("openapi_cache", dict)


def document(app: web.Application) -> dict[str, Any]:
    cache = app[CACHE]
    if "doc" not in cache:
        cache["doc"] = build(app)
    return cache["doc"]


@routes.get("/openapi.json")
@access("public")
async def openapi_json(request: web.Request) -> web.Response:
    """This API's OpenAPI 3.1 document."""
    return json_response(document(request.app))


@routes.get("/docs")
@access("public")
async def docs(request: web.Request) -> web.Response:
    """The API reference, rendered from the OpenAPI document: one page, no external assets."""
    from taskd.http.openapi.reference import render

    cache = request.app[CACHE]
    if "html" not in cache:
        cache["html"] = render(document(request.app))
    return web.Response(text=cache["html"], content_type="text/html")


OPENAPI = {
    "GET /openapi.json": Op(
        "This API's OpenAPI 3.1 document", response={"type": "object"}, extension=True
    ),
    "GET /docs": Op(
        "The API reference page, rendered from the document",
        response=STR,
        response_type="text/html",
        extension=True,
    ),
}


def setup(app: web.Application) -> None:
    app[CACHE] = {}
    app.add_routes(routes)
    about = "This document and the page rendered from it."
    declare(app, __name__, Part("openapi", "API reference", about, OPENAPI))
