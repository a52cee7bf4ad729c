"""The OpenAPI 3.1 description of every bodhi endpoint, served at ``bodhi/openapi.json``.

Written by hand next to the handlers (a test fails when a route and this document disagree)
because the handlers validate requests themselves; the schemas here describe what they
accept and answer, including the error shape every failure has.
"""

from __future__ import annotations

from . import __version__


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = _json(_ref("Error"), "Error")
_COMMON_ERRORS = {"401": ERROR, "403": ERROR, "429": ERROR}


def _op(summary: str, responses: dict, *, body: dict | None = None, params: list | None = None,
        tag: str = "openai", stream: bool = False) -> dict:
    op = {"summary": summary, "tags": [tag], "responses": {**responses, **_COMMON_ERRORS}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    if stream:
        ok = op["responses"]["200"]
        ok["content"]["text/event-stream"] = {"schema": {
            "type": "object", "required": ["data"],
            "description": "one server-sent event: `data: <JSON chunk>`; the last is "
            "`data: [DONE]`, or `data: {\"error\": ...}` when the engine fails mid-stream",
            "properties": {"data": {"type": "string"}, "event": {"type": "string"},
                           "id": {"type": "string"}}}}
    return op


def path_param(name: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1}}


def query_param(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


PAGE_PARAMS = [
    query_param("page", {"type": "integer", "minimum": 1, "default": 1}, "page number"),
    query_param("page_size", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                "items per page"),
]


def page_of(item: dict) -> dict:
    return {"type": "object", "required": ["data", "total", "page", "page_size"],
            "properties": {"data": {"type": "array", "items": item},
                           "total": {"type": "integer", "minimum": 0},
                           "page": {"type": "integer", "minimum": 1},
                           "page_size": {"type": "integer", "minimum": 1}}}


_MESSAGE = {"type": "object", "required": ["role"], "properties": {
    "role": {"enum": ["system", "developer", "user", "assistant", "tool", "function"]},
    "content": {"type": ["string", "array", "null"]}}}
_STOP = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_SAMPLING = {
    "stream": {"type": "boolean"},
    "max_tokens": {"type": "integer", "minimum": 1},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "n": {"type": "integer", "minimum": 1, "maximum": 1},
    "stop": _STOP,
    "seed": {"type": "integer"},
}
_TEXT_INPUT = {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {
    "oneOf": [{"type": "string"}, {"type": "integer"},
              {"type": "array", "items": {"type": "integer"}}]}}]}
_USAGE = {"type": "object", "properties": {"prompt_tokens": {"type": "integer"},
                                           "completion_tokens": {"type": "integer"},
                                           "total_tokens": {"type": "integer"}}}

SCHEMAS: dict[str, dict] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "code", "param"], "properties": {
            "message": {"type": "string"}, "type": {"type": "string"},
            "code": {"type": ["string", "null"]}, "param": {"type": ["string", "null"]}}}}},
    "Model": {"type": "object", "required": ["id", "object", "created", "owned_by"],
              "properties": {"id": {"type": "string"}, "object": {"const": "model"},
                             "created": {"type": "integer"}, "owned_by": {"type": "string"}}},
    "ModelList": {"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"}, "data": {"type": "array", "items": _ref("Model")}}},
    "ChatCompletionRequest": {
        "type": "object", "required": ["model", "messages"],
        "properties": {"model": {"type": "string", "minLength": 1},
                       "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
                       **_SAMPLING}},
    "ChatCompletion": {"type": "object", "required": ["object", "choices", "model"],
                       "properties": {"id": {"type": "string"},
                                      "object": {"const": "chat.completion"},
                                      "model": {"type": "string"},
                                      "choices": {"type": "array"}, "usage": _USAGE}},
    "CompletionRequest": {
        "type": "object", "required": ["model", "prompt"],
        "properties": {"model": {"type": "string", "minLength": 1}, "prompt": _TEXT_INPUT,
                       **_SAMPLING}},
    "Completion": {"type": "object", "required": ["object", "choices", "model"],
                   "properties": {"id": {"type": "string"},
                                  "object": {"const": "text_completion"},
                                  "model": {"type": "string"},
                                  "choices": {"type": "array"}, "usage": _USAGE}},
    "EmbeddingRequest": {
        "type": "object", "required": ["model", "input"],
        "properties": {"model": {"type": "string", "minLength": 1}, "input": _TEXT_INPUT,
                       "encoding_format": {"enum": ["float"]}}},
    "EmbeddingList": {"type": "object", "required": ["object", "data", "model"], "properties": {
        "object": {"const": "list"}, "model": {"type": "string"}, "usage": _USAGE,
        "data": {"type": "array", "items": {"type": "object", "required": ["embedding", "index"],
                                            "properties": {
                                                "embedding": {"type": "array",
                                                              "items": {"type": "number"}},
                                                "index": {"type": "integer"}}}}}},
}

_INFERENCE_ERRORS = {"400": ERROR, "404": ERROR, "502": ERROR, "503": ERROR}

PATHS: dict[str, dict] = {
    "/v1/models": {"get": _op("List models (aliases and discovered files)",
                              {"200": _json(_ref("ModelList"))})},
    "/v1/models/{model_id}": {"get": _op(
        "One model", {"200": _json(_ref("Model")), "404": ERROR},
        params=[path_param("model_id", "model id; may contain '/' and ':'")])},
    "/v1/chat/completions": {"post": _op(
        "Chat completion; streams server-sent events with \"stream\": true",
        {"200": _json(_ref("ChatCompletion")), **_INFERENCE_ERRORS},
        body=_ref("ChatCompletionRequest"), stream=True)},
    "/v1/completions": {"post": _op(
        "Text completion; streams with \"stream\": true",
        {"200": _json(_ref("Completion")), **_INFERENCE_ERRORS},
        body=_ref("CompletionRequest"), stream=True)},
    "/v1/embeddings": {"post": _op(
        "Embeddings, from an engine started with --embedding",
        {"200": _json(_ref("EmbeddingList")), **_INFERENCE_ERRORS},
        body=_ref("EmbeddingRequest"))},
    "/openapi.json": {"get": _op("This document", {"200": _json({"type": "object"})},
                                 tag="meta")},
}


def document(base_url: str) -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "bodhi-jupyter", "version": __version__,
                 "description": "Local LLMs served from inside Jupyter: an OpenAI-compatible "
                 "API and the app API. Every error is {\"error\": {message, type, code, "
                 "param}}."},
        "servers": [{"url": f"{base_url.rstrip('/')}/bodhi"}],
        "security": [{"jupyterToken": []}, {"bodhiToken": []}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "jupyterToken": {"type": "http", "scheme": "bearer",
                                 "description": "a Jupyter server or JupyterHub token "
                                 "(`Authorization: token ...` also works)"},
                "bodhiToken": {"type": "http", "scheme": "bearer", "bearerFormat": "bodhi_...",
                               "description": "a bodhi API token from POST /app/tokens; "
                               "limited to its scope and models"},
            },
        },
    }
