"""``GET /openapi.json`` describes every route, validly; ``GET /docs`` renders it (habit 13)."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from taskd.app import create_app, families
from taskd.http.envelopes import family_of
from taskd.http.openapi import ENVELOPES, build

HTTP_METHODS = {"get", "put", "post", "delete", "patch"}


def served(app) -> set[tuple[str, str]]:
    """(method, path) of every API route the app answers, HEAD aside (aiohttp adds it to GETs).

    The web dashboard's HTML pages are no API: docs/ui.md lists them (tests/ui checks it).
    """
    return {
        (route.method.lower(), resource.canonical)
        for resource in app.router.resources()
        for route in resource
        if route.method != "HEAD" and not route.handler.__module__.startswith("taskd.web")
    }


def documented(doc) -> set[tuple[str, str]]:
    return {(m, p) for p, methods in doc["paths"].items() for m in methods if m in HTTP_METHODS}


@pytest.fixture
async def doc(make_client):
    client = await make_client()
    resp = await client.get("/openapi.json")  # public: no credentials
    assert resp.status == 200
    assert resp.content_type == "application/json"
    return client.app, await resp.json()


async def test_every_route_is_documented_and_every_documented_route_exists(doc):
    app, document = doc
    missing = served(app) - documented(document)
    assert not missing, f"routes without an OpenAPI declaration: {sorted(missing)}"
    stale = documented(document) - served(app)
    assert not stale, f"documented routes the app does not serve: {sorted(stale)}"


async def test_the_document_is_valid_openapi_3_1(doc):
    _, document = doc
    assert document["openapi"].startswith("3.1")
    validate(document)


async def test_operations_are_complete(doc):
    """Unique ids, a summary, security from the access level, errors in the family's envelope."""
    _, document = doc
    ids = []
    for path, methods in document["paths"].items():
        envelope = f"#/components/schemas/{ENVELOPES[family_of(path)]}"
        for method, op in methods.items():
            ids.append(op["operationId"])
            assert op["summary"], (method, path)
            assert "security" in op, (method, path)
            # Path parameters are declared for every {name} of the path.
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == set(re.findall(r"\{([^}]+)\}", path)), (method, path)
            for status, reply in op["responses"].items():
                if int(status) < 400:
                    continue
                schema = reply["content"]["application/json"]["schema"]
                refs = [schema.get("$ref")] + [s.get("$ref") for s in schema.get("allOf", [])]
                assert envelope in refs, (method, path, status, schema)
            if op["security"] and {} not in op["security"]:  # {}: credentials optional
                assert "401" in op["responses"], (method, path)
    assert len(ids) == len(set(ids))
    links = [
        link["operationId"]
        for methods in document["paths"].values()
        for op in methods.values()
        for reply in op["responses"].values()
        for link in reply.get("links", {}).values()
    ]
    assert links and set(links) <= set(ids)


async def test_security_follows_the_access_levels(doc):
    _, document = doc
    paths = document["paths"]
    schemes = set(document["components"]["securitySchemes"])
    assert {"bearerAuth", "basicAuth", "workerId", "workerSecret", "taskToken"} <= schemes
    assert paths["/ready"]["get"]["security"] == []
    assert paths["/openapi.json"]["get"]["security"] == []
    admin = [{"bearerAuth": []}, {"basicAuth": []}]
    assert paths["/api/process_definitions/{name}"]["put"]["security"] == admin
    assert {"taskToken": []} in paths["/api/tasks/{task_id}/succeed"]["post"]["security"]
    assert paths["/task/submit"]["post"]["security"] == [{"workerId": [], "workerSecret": []}]
    assert paths["/worker/create"]["post"]["security"] == admin


def test_the_document_is_built_without_a_running_app(settings):
    """Families declare their routes; building needs only the router (used by the fuzzer)."""
    document = build(create_app(settings))
    families_tagged = {op["tags"][0] for m in document["paths"].values() for op in m.values()}
    assert len(families_tagged) == len(families())


async def test_docs_page_lists_every_path(make_client):
    client = await make_client()
    resp = await client.get("/docs")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = await resp.text()
    document = await (await client.get("/openapi.json")).json()
    for path, methods in document["paths"].items():
        assert f"{path}</h3>" in page.replace("&#x27;", "'"), path
        for op in methods.values():
            assert f'id="{op["operationId"]}"' in page
    for name in document["components"]["schemas"]:
        assert f'id="schema-{name}"' in page
    # Self-contained: nothing is loaded from elsewhere.
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']https?:""", page)


async def test_every_create_documents_its_idempotency_key(doc):
    _, doc = doc
    creates = {
        ("post", "/v1/dagrun/"),
        ("post", "/apis/v1/tasks/operations"),
        ("post", "/api/process_definitions/{name}/trigger"),
        ("post", "/v1/dagrun"),
        ("post", "/task/submit"),
        ("post", "/task/bulk_submit"),
    }
    keyed = {
        (method, path)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if any(p["name"] == "Idempotency-Key" for p in op.get("parameters", []))
    }
    assert keyed == creates
    for method, path in creates:
        assert {"409", "422"} <= set(doc["paths"][path][method]["responses"])
