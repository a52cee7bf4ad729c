"""The OpenAPI 3.1 description of every bodhi endpoint, served at ``bodhi/openapi.json``.

Written by hand next to the handlers (a test fails when a route and this document
disagree). The inference request schemas are not written here: they are the very dicts
that validate requests (:mod:`.schemas`); the rest describe what the handlers accept and
answer, including the error shape every failure has.
"""

from __future__ import annotations

from . import __version__
from .schemas import REQUEST_SCHEMAS


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = _json(_ref("Error"), "Error")
ANTHROPIC_ERROR = _json(_ref("AnthropicError"), "Error, in Anthropic's shape")
_COMMON_ERRORS = {"401": ERROR, "403": ERROR, "429": ERROR}

_OPENAI_STREAM = ("one server-sent event: `data: <JSON chunk>`; the last is `data: [DONE]`, "
                  "or `data: {\"error\": ...}` when the engine fails mid-stream")


def _op(summary: str, responses: dict, *, body: dict | None = None, params: list | None = None,
        tag: str = "openai", stream: bool | str = False, errors: dict | None = None) -> dict:
    op = {"summary": summary, "tags": [tag],
          "responses": {**responses, **(errors or _COMMON_ERRORS)}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    if stream:
        ok = op["responses"]["200"]
        ok["content"]["text/event-stream"] = {"schema": {
            "type": "object", "required": ["data"],
            "description": stream if isinstance(stream, str) else _OPENAI_STREAM,
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


_USAGE = {"type": "object", "properties": {"prompt_tokens": {"type": "integer"},
                                           "completion_tokens": {"type": "integer"},
                                           "total_tokens": {"type": "integer"}}}

SCHEMAS: dict[str, dict] = {
    **REQUEST_SCHEMAS,
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "code", "param"], "properties": {
            "message": {"type": "string"}, "type": {"type": "string"},
            "code": {"type": ["string", "null"]}, "param": {"type": ["string", "null"]}}}}},
    "Model": {"type": "object", "required": ["id", "object", "created", "owned_by"],
              "properties": {"id": {"type": "string"}, "object": {"const": "model"},
                             "created": {"type": "integer"}, "owned_by": {"type": "string"}}},
    "ModelList": {"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"}, "data": {"type": "array", "items": _ref("Model")}}},
    "ChatCompletion": {"type": "object", "required": ["object", "choices", "model"],
                       "properties": {"id": {"type": "string"},
                                      "object": {"const": "chat.completion"},
                                      "model": {"type": "string"},
                                      "choices": {"type": "array"}, "usage": _USAGE}},
    "Completion": {"type": "object", "required": ["object", "choices", "model"],
                   "properties": {"id": {"type": "string"},
                                  "object": {"const": "text_completion"},
                                  "model": {"type": "string"},
                                  "choices": {"type": "array"}, "usage": _USAGE}},
    "EmbeddingList": {"type": "object", "required": ["object", "data", "model"], "properties": {
        "object": {"const": "list"}, "model": {"type": "string"}, "usage": _USAGE,
        "data": {"type": "array", "items": {"type": "object", "required": ["embedding", "index"],
                                            "properties": {
                                                "embedding": {"anyOf": [
                                                    {"type": "array",
                                                     "items": {"type": "number"}},
                                                    {"type": "string",
                                                     "description": "base64 float32s"}]},
                                                "index": {"type": "integer"}}}}}},
}

_INPUT_OUTPUT_USAGE = {"type": "object", "properties": {
    "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"}}}
SCHEMAS.update({
    "AnthropicError": {"type": "object", "required": ["type", "error"], "properties": {
        "type": {"const": "error"},
        "error": {"type": "object", "required": ["type", "message"], "properties": {
            "type": {"enum": ["invalid_request_error", "authentication_error",
                              "permission_error", "not_found_error", "request_too_large",
                              "rate_limit_error", "api_error", "overloaded_error"]},
            "message": {"type": "string"}}}}},
    "Response": {"type": "object", "required": ["object", "output"], "properties": {
        "id": {"type": "string"}, "object": {"const": "response"},
        "status": {"type": "string"}, "model": {"type": "string"},
        "output": {"type": "array", "items": {"type": "object"}},
        "usage": {**_INPUT_OUTPUT_USAGE, "properties": {
            **_INPUT_OUTPUT_USAGE["properties"], "total_tokens": {"type": "integer"}}}}},
    "Message": {"type": "object", "required": ["type", "role", "content"], "properties": {
        "id": {"type": "string"}, "type": {"const": "message"},
        "role": {"const": "assistant"}, "model": {"type": "string"},
        "content": {"type": "array", "items": {"type": "object", "required": ["type"]}},
        "stop_reason": {"type": ["string", "null"]},
        "stop_sequence": {"type": ["string", "null"]}, "usage": _INPUT_OUTPUT_USAGE}},
    "TokenCount": {"type": "object", "required": ["input_tokens"], "properties": {
        "input_tokens": {"type": "integer", "minimum": 0}}},
    "Infill": {"type": "object", "required": ["content", "mode"], "properties": {
        "content": {"type": "string", "description": "the text to insert at the cursor"},
        "mode": {"enum": ["infill", "completion"], "description": "infill: the model's own "
                 "fill-in-the-middle tokens; completion: the model has none, so a plain "
                 "prompt (the extra chunks, then the prefix) was completed"},
        "tokens_predicted": {"type": "integer"}, "tokens_evaluated": {"type": "integer"},
        "stop": {"type": "boolean"}, "stop_type": {"type": "string"},
        "timings": {"type": "object"}, "model": {"type": "string"}}},
})

_INFERENCE_ERRORS = {"400": ERROR, "404": ERROR, "502": ERROR, "503": ERROR}
_ANTHROPIC_ERRORS = {code: ANTHROPIC_ERROR for code in ("400", "401", "403", "404", "429",
                                                        "502", "503")}
_RESPONSES_STREAM = ("one server-sent event: `event: <type>` and `data: <JSON>` whose "
                     "`type` is the same: response.created, response.in_progress, "
                     "response.output_item.added, response.content_part.added, "
                     "response.output_text.delta (`delta`), response.output_text.done, "
                     "response.content_part.done, response.output_item.done, and last "
                     "response.completed (the whole response, with `usage`); `data: "
                     "{\"error\": ...}` when the engine fails mid-stream")
_MESSAGES_STREAM = ("one server-sent event: `event: <type>` and `data: <JSON>` whose "
                    "`type` is the same: message_start (`message.usage.input_tokens`), "
                    "content_block_start, content_block_delta (`delta.text`), "
                    "content_block_stop, message_delta (`usage.output_tokens`, "
                    "`delta.stop_reason`), message_stop; `event: error` with an "
                    "AnthropicError when the engine fails mid-stream")

_INFILL_STREAM = ("one server-sent event: `data: <JSON>` with `content` (the next piece) and "
                  "`mode`; the last has `stop: true`, `tokens_predicted` and `timings`; "
                  "`data: {\"error\": ...}` when the engine fails mid-stream (no [DONE])")

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
    "/v1/responses": {"post": _op(
        "OpenAI Responses API (stateless); streams typed events with \"stream\": true",
        {"200": _json(_ref("Response")), **_INFERENCE_ERRORS},
        body=_ref("ResponseRequest"), stream=_RESPONSES_STREAM)},
    "/v1/messages": {"post": _op(
        "Anthropic Messages API (key in x-api-key or Authorization); streams typed events "
        "with \"stream\": true; errors in Anthropic's shape",
        {"200": _json(_ref("Message"))}, body=_ref("MessageRequest"),
        stream=_MESSAGES_STREAM, tag="anthropic", errors=_ANTHROPIC_ERRORS)},
    "/v1/messages/count_tokens": {"post": _op(
        "Anthropic token count of a Messages request (the model's own template)",
        {"200": _json(_ref("TokenCount"))}, body=_ref("CountTokensRequest"),
        tag="anthropic", errors=_ANTHROPIC_ERRORS)},
    "/v1/infill": {"post": _op(
        "Fill in the middle (llama-server's /infill): the text between input_prefix and "
        "input_suffix, with input_extra chunks as context; a model without FIM tokens gets "
        "a plain completion prompt (mode \"completion\"); streams with \"stream\": true",
        {"200": _json(_ref("Infill")), **_INFERENCE_ERRORS},
        body=_ref("InfillRequest"), stream=_INFILL_STREAM)},
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


# -- app API: tokens -----------------------------------------------------------------------
_SCOPE = {"enum": ["read", "write", "admin"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_APP_ERRORS = {"400": ERROR, "404": ERROR}

SCHEMAS.update({
    "Token": {"type": "object", "required": ["id", "name", "prefix", "scope", "status",
                                             "created_at"], "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "prefix": {"type": "string"},
        "owner": {"type": "string"}, "scope": _SCOPE,
        "scopes": {"type": "array", "items": _SCOPE},
        "models": {"type": ["array", "null"], "items": {"type": "string"}},
        "status": {"enum": ["active", "inactive", "expired"]},
        "created_at": {"type": "string", "format": "date-time"},
        "last_used_at": _TIME, "expires_at": _TIME,
        "kernel": {"type": "boolean", "description": "a notebook kernel's own credential, "
                   "handed over by the server and deleted with the kernel"},
        "notebook": {"type": ["string", "null"],
                     "description": "the notebook of a kernel's credential"}}},
    "NewToken": {"allOf": [_ref("Token"), {"type": "object", "required": ["token"],
                                           "properties": {"token": {
                                               "type": "string", "pattern": "^bodhi_"}}}]},
    "TokenRequest": {"type": "object", "required": ["name"], "additionalProperties": False,
                     "description": "exactly one of scope (a level) or scopes (the highest "
                     "of the list counts)",
                     "oneOf": [{"required": ["scope"]}, {"required": ["scopes"]}],
                     "properties": {
                         "name": {"type": "string", "minLength": 1, "maxLength": 255},
                         "scope": _SCOPE,
                         "scopes": {"type": "array", "minItems": 1, "items": _SCOPE},
                         "expires_in": {"type": ["integer", "null"], "minimum": 1,
                                        "maximum": 315360000},
                         "models": {"type": ["array", "null"], "minItems": 1,
                                    "items": {"type": "string"}}}},
    "TokenUpdate": {"type": "object", "additionalProperties": False, "minProperties": 1,
                    "properties": {"name": {"type": "string", "minLength": 1,
                                            "maxLength": 255},
                                   "status": {"enum": ["active", "inactive"]}}},
})

_TOKEN_ID = path_param("token_id", "token id")
PATHS.update({
    "/app/tokens": {
        "get": _op("Your API tokens (admins: ?user=NAME or *); never the secret",
                   {"200": _json(page_of(_ref("Token"))), **_APP_ERRORS},
                   params=[*PAGE_PARAMS, query_param("user", {"type": "string"},
                                                     "whose tokens (admin)")], tag="tokens"),
        "post": _op("Mint a token; the secret is in this response only",
                    {"201": _json(_ref("NewToken"), "Created"), **_APP_ERRORS},
                    body=_ref("TokenRequest"), tag="tokens"),
    },
    "/app/tokens/{token_id}": {
        "get": _op("One token", {"200": _json(_ref("Token")), **_APP_ERRORS},
                   params=[_TOKEN_ID], tag="tokens"),
        "put": _op("Rename, or set active/inactive", {"200": _json(_ref("Token")),
                                                      **_APP_ERRORS},
                   params=[_TOKEN_ID], body=_ref("TokenUpdate"), tag="tokens"),
        "delete": _op("Delete a token", {"204": {"description": "Deleted"}, **_APP_ERRORS},
                      params=[_TOKEN_ID], tag="tokens"),
    },
})


# -- app API: info, processes, settings, usage, metrics -------------------------------------
SCHEMAS.update({
    "Info": {"type": "object", "required": ["version", "engine", "status"], "properties": {
        "version": {"type": "string"}, "status": {"type": "string"},
        "engine": {"type": "object", "properties": {"command": {"type": "string"},
                                                    "version": {"type": "string"}}},
        "models_loaded": {"type": "integer"}, "uptime_s": {"type": "number"}}},
    "User": {"type": "object", "required": ["name", "role", "auth_method", "scope"],
             "properties": {
                 "name": {"type": "string"},
                 "role": {"enum": ["user", "power_user", "admin"]},
                 "auth_method": {"enum": ["jupyter", "bodhi_token"]}, "scope": _SCOPE,
                 "token": {"type": ["object", "null"]}}},
    "Process": {"type": "object", "required": ["id", "model", "owner", "state"], "properties": {
        "id": {"type": "string"}, "model": {"type": "string"}, "owner": {"type": "string"},
        "embedding": {"type": "boolean"}, "pid": {"type": ["integer", "null"]},
        "port": {"type": ["integer", "null"]},
        "state": {"enum": ["starting", "ready", "stopping", "stopped", "crashed", "failed"]},
        "started_at": _TIME, "last_used_at": _TIME, "in_flight": {"type": "integer"},
        "memory_bytes": {"type": ["integer", "null"]}, "log_path": {"type": "string"}}},
    "ProcessRequest": {"type": "object", "required": ["model"], "properties": {
        "model": {"type": "string", "minLength": 1}, "embedding": {"type": "boolean"}}},
    "ProcessLog": {"type": "object", "required": ["id", "lines"], "properties": {
        "id": {"type": "string"}, "lines": {"type": "array", "items": {"type": "string"}}}},
    "Setting": {"type": "object", "required": ["key", "value", "source", "mutable"],
                "properties": {
                    "key": {"type": "string"}, "value": {},
                    "source": {"enum": ["command line", "environment", "config file",
                                        "database", "default"]},
                    "mutable": {"type": "boolean"}, "help": {"type": "string"}}},
    "SettingUpdate": {"type": "object", "required": ["value"], "properties": {"value": {}}},
    "UsageRow": {"type": "object", "required": ["requests", "prompt_tokens",
                                                "completion_tokens", "errors"], "properties": {
        "model": {"type": "string"}, "token_id": {"type": ["string", "null"]},
        "token_name": {"type": ["string", "null"]}, "day": {"type": "string"},
        "user": {"type": "string"}, "notebook": {"type": ["string", "null"]},
        "group": {"type": ["string", "null"]}, "requests": {"type": "integer"},
        "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
        "errors": {"type": "integer"}, "avg_duration_ms": {"type": ["number", "null"]}}},
})

_PROCESS_ID = path_param("process_id", "process id")
_KEY = path_param("key", "setting key, e.g. EngineSupervisor.keep_alive")
_USER = query_param("user", {"type": "string"}, "whose records (admin): a name or *")
PATHS.update({
    "/app/info": {"get": _op("Version, engine and status", {"200": _json(_ref("Info"))},
                             tag="app")},
    "/app/user": {"get": _op("Who am I", {"200": _json(_ref("User"))}, tag="app")},
    "/app/processes": {
        "get": _op("Loaded engines (admins see everyone's)",
                   {"200": _json(page_of(_ref("Process"))), "400": ERROR},
                   params=[*PAGE_PARAMS, _USER], tag="processes"),
        "post": _op("Load a model for the caller",
                    {"201": _json(_ref("Process"), "Loaded"), **_APP_ERRORS, "502": ERROR,
                     "503": ERROR}, body=_ref("ProcessRequest"), tag="processes"),
    },
    "/app/processes/{process_id}": {
        "get": _op("One engine", {"200": _json(_ref("Process")), **_APP_ERRORS},
                   params=[_PROCESS_ID], tag="processes"),
        "delete": _op("Unload an engine", {"204": {"description": "Unloaded"},
                                           **_APP_ERRORS},
                      params=[_PROCESS_ID], tag="processes"),
    },
    "/app/processes/{process_id}/log": {"get": _op(
        "The end of an engine's log", {"200": _json(_ref("ProcessLog")), **_APP_ERRORS},
        params=[_PROCESS_ID, query_param("lines", {"type": "integer", "minimum": 1,
                                                   "maximum": 5000}, "how many lines")],
        tag="processes")},
    "/app/settings": {"get": _op(
        "Every effective setting, its value and where it came from",
        {"200": _json(page_of(_ref("Setting"))), "400": ERROR}, params=PAGE_PARAMS,
        tag="settings")},
    "/app/settings/{key}": {
        "get": _op("One setting", {"200": _json(_ref("Setting")), **_APP_ERRORS},
                   params=[_KEY], tag="settings"),
        "put": _op("Change a run-time setting (stored; wins over config)",
                   {"200": _json(_ref("Setting")), **_APP_ERRORS}, params=[_KEY],
                   body=_ref("SettingUpdate"), tag="settings"),
        "delete": _op("Drop the stored value; config or default applies again",
                      {"200": _json(_ref("Setting")), **_APP_ERRORS}, params=[_KEY],
                      tag="settings"),
    },
    "/app/usage": {"get": _op(
        "Inference usage aggregated by model, token, day, user, notebook and/or group",
        {"200": _json(page_of(_ref("UsageRow"))), "400": ERROR},
        params=[*PAGE_PARAMS, _USER,
                query_param("group_by", {"type": "string"},
                            "comma-separated: model, token, day, user, notebook (the "
                            "notebook whose kernel credential made the request; null for "
                            "other callers), group (the caller's JupyterHub groups: a "
                            "request counts in each; null: none)"),
                query_param("since", {"type": "string", "format": "date-time"}, "from"),
                query_param("until", {"type": "string", "format": "date-time"},
                            "until (exclusive)")], tag="usage")},
    "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["usage"], "responses": {
        "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
        **_COMMON_ERRORS}}},
})

# -- app API: the panel's conversations and models (kept in their own module) -------------
from .openapi_panel import add_panel_paths  # noqa: E402

add_panel_paths(PATHS, SCHEMAS, _op, _json, _ref, ERROR, path_param, query_param, PAGE_PARAMS,
                page_of)

# -- the models work: pulls, metadata, upstreams, aliases, the Ollama API (own modules) ----
from .openapi_aliases import add_alias_paths  # noqa: E402
from .openapi_audit import add_audit_paths  # noqa: E402
from .openapi_meta import add_model_metadata  # noqa: E402
from .openapi_ollama import add_ollama_paths  # noqa: E402
from .openapi_pulls import add_pull_paths  # noqa: E402
from .openapi_upstreams import add_upstream_paths  # noqa: E402

add_pull_paths(PATHS, SCHEMAS, _op, _json, _ref, ERROR, path_param, PAGE_PARAMS, page_of)
add_model_metadata(SCHEMAS)
add_upstream_paths(PATHS, SCHEMAS, _op, _json, _ref, ERROR, path_param, PAGE_PARAMS, page_of)
add_alias_paths(PATHS, SCHEMAS, _op, _json, _ref, ERROR, path_param, PAGE_PARAMS, page_of)
add_ollama_paths(PATHS, SCHEMAS, _op, _json, _ref)
add_audit_paths(PATHS, SCHEMAS, _op, _json, _ref, ERROR, query_param, PAGE_PARAMS, page_of)
