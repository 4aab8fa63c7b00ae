"""Declaring what a route takes and answers, for the OpenAPI document (``taskd.http.openapi``).

Each API family keeps a table ``{"METHOD /path": Op(...)}`` next to its routes (in
``taskd.<family>.openapi``); the document is built from those tables and the route
tables together, so the access level of each route comes from the code itself. Schemas are
plain JSON Schema (OpenAPI 3.1) dicts built with the small helpers below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
UUID: Schema = {"type": "string", "format": "uuid"}
ANY: Schema = {}
INT64_MAX = 2**63 - 1


def count(minimum: int = 1) -> Schema:
    """A count or limit in a query: a 64-bit integer from ``minimum``."""
    return {"type": "integer", "minimum": minimum, "maximum": INT64_MAX}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """The schema or null (3.1 writes it as a list of types, or ``anyOf`` for a $ref)."""
    if "$ref" in schema or "type" not in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    out = {**schema, "type": [*kinds, "null"]}
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def arr(items: Schema, **more: Any) -> Schema:
    return {"type": "array", "items": items, **more}


def obj(
    props: dict[str, Schema],
    required: tuple[str, ...] | list[str] = (),
    *,
    closed: bool = False,
    **more: Any,
) -> Schema:
    """An object; ``closed`` when the server refuses fields it does not know."""
    out: Schema = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    out.update(more)
    return out


def enum(*values: Any, **more: Any) -> Schema:
    kinds = {type(v) for v in values}
    base: Schema = {"type": "string"} if kinds == {str} else {}
    return {**base, "enum": list(values), **more}


def described(schema: Schema, text: str) -> Schema:
    return {**schema, "description": text}


@dataclass(frozen=True)
class Op:
    """One operation: what it takes, what it answers on success, which errors it documents.

    ``auth`` overrides what the route's access level implies, for routes that check
    credentials themselves (work-queue workers). ``errors`` lists the error statuses worth
    naming; every operation also documents 400/401/403/404 where they can happen and a
    catch-all in the family's error envelope.
    """

    summary: str
    description: str = ""
    body: Schema | None = None
    body_required: bool = True
    form: Schema | None = None  # also accepted as application/x-www-form-urlencoded
    query: dict[str, Schema] = field(default_factory=dict)
    required_query: tuple[str, ...] = ()
    path: dict[str, Schema] = field(default_factory=dict)
    status: int = 200
    also: dict[int, str] = field(default_factory=dict)  # other success statuses: their meaning
    response: Schema | None = None
    response_type: str = "application/json"
    response_headers: dict[str, Schema] = field(default_factory=dict)
    auth: str | None = None
    errors: tuple[int, ...] = ()
    links: dict[str, Any] = field(default_factory=dict)
    extension: bool = False  # not in the seed document: a taskd addition
