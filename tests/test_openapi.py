"""The OpenAPI document describes exactly the routes that exist, with valid schemas."""

from __future__ import annotations

import inspect
import re

import httpx
from tornado import web

from bodhi_jupyter.handlers.base import NotFoundHandler

METHODS = ("get", "post", "put", "patch", "delete")
_GROUP = re.compile(r"\((?:\?P<(\w+)>)?[^)]*\)")


def route_operations(handlers) -> set[tuple[str, str]]:
    """(OpenAPI path, method) for every bodhi route, from the live handler list."""
    ops = set()
    for pattern, cls, *_ in handlers:
        if cls is NotFoundHandler:
            continue
        for method in METHODS:
            impl = getattr(cls, method)
            if impl is getattr(web.RequestHandler, method):
                continue  # tornado's 405 default
            names = iter(p for p in inspect.signature(impl).parameters if p != "self")
            path = _GROUP.sub(lambda m: "{" + (m.group(1) or next(names)) + "}", pattern)
            assert path.startswith("bodhi/"), pattern
            ops.add((path[len("bodhi"):], method))
    return ops


def document_operations(doc: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, item in doc["paths"].items() for method in item
            if method in METHODS}


async def test_document_matches_the_routes(bodhi_app, server_url, jupyter_token, jp_base_url):
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"{server_url}bodhi/openapi.json",
                                headers={"Authorization": f"token {jupyter_token}"})
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["openapi"].startswith("3.1")
    assert doc["servers"][0]["url"] == f"{jp_base_url.rstrip('/')}/bodhi"
    routes = route_operations(bodhi_app.handlers)
    described = document_operations(doc)
    assert routes - described == set(), "routes missing from the OpenAPI document"
    assert described - routes == set(), "documented operations without a route"
    assert {"jupyterToken", "bodhiToken"} <= set(doc["components"]["securitySchemes"])


def test_document_is_valid_openapi_3_1():
    from jsonschema import Draft202012Validator

    from bodhi_jupyter.openapi import document

    doc = document("/base/")
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
    import schemathesis

    schema = schemathesis.openapi.from_dict(doc)
    assert {op.label for op in (r.ok() for r in schema.get_all_operations())} >= {
        "POST /v1/chat/completions", "GET /v1/models/{model_id}"}


def test_route_paths_convert_named_and_positional_groups():
    class H(web.RequestHandler):
        def get(self, model_id):
            pass

        def delete(self, model_id):
            pass

    assert route_operations([(r"bodhi/v1/models/(.+)", H)]) == {
        ("/v1/models/{model_id}", "get"), ("/v1/models/{model_id}", "delete")}
    assert route_operations([(r"bodhi/x/(?P<key>[^/]+)/log", H)]) == {
        ("/x/{key}/log", "get"), ("/x/{key}/log", "delete")}
