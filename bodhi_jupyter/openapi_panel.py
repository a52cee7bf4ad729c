"""OpenAPI paths of the panel's app API (conversations, models), merged into the document
by ``openapi.py``."""

from __future__ import annotations

from .conversations import PARAMS, ROLES, STATS, STATUSES


def add_panel_paths(paths: dict, schemas: dict, op, json, ref, error, path_param,
                    query_param, page_params, page_of) -> None:
    time = {"type": "string", "format": "date-time"}
    params = {"type": "object", "additionalProperties": False, "properties": {
        "system_prompt": {"type": ["string", "null"]},
        "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
        "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "max_tokens": {"type": ["integer", "null"], "minimum": 1, "maximum": 1000000},
        "seed": {"type": ["integer", "null"], "minimum": -2**63, "maximum": 2**63 - 1},
        "stop": {"oneOf": [{"type": "string", "minLength": 1},
                           {"type": "array", "maxItems": 4,
                            "items": {"type": "string", "minLength": 1}},
                           {"type": "null"}]}}}
    assert set(params["properties"]) == set(PARAMS)
    stats = {"type": ["object", "null"], "additionalProperties": False, "properties": {
        **{k: {"type": ["number", "null"], "minimum": 0, "maximum": 1e12}
           for k in STATS if k not in ("error", "finish_reason")},
        "error": {"type": ["string", "null"], "maxLength": 10000},
        "finish_reason": {"type": ["string", "null"], "maxLength": 10000}}}
    panel_schemas = {
        "ConversationParams": params,
        "ConversationMessage": {
                    "type": "object",
                    "required": ["id", "conversation_id", "parent_id", "role", "content",
                                 "status", "created_at"],
                    "properties": {
                        "id": {"type": "string"}, "conversation_id": {"type": "string"},
                        "parent_id": {"type": ["string", "null"]}, "role": {"enum": list(ROLES)},
                        "content": {"type": "string"}, "model": {"type": ["string", "null"]},
                        "status": {"enum": list(STATUSES)}, "stats": stats,
                        "created_at": time, "updated_at": time}},
        "ConversationSummary": {
            "type": "object", "required": ["id", "title", "params", "created_at", "updated_at",
                                           "message_count"],
            "properties": {"id": {"type": "string"}, "title": {"type": "string"},
                           "model": {"type": ["string", "null"]}, "params": {"type": "object"},
                           "created_at": time, "updated_at": time,
                           "message_count": {"type": "integer", "minimum": 0}}},
        "Conversation": {"allOf": [ref("ConversationSummary"), {
            "type": "object", "required": ["messages"], "properties": {
                "messages": {"type": "array", "items": ref("ConversationMessage"),
                             "description": "every branch, oldest first; parent_id makes "
                             "the tree"}}}]},
        "ConversationRequest": {
            "type": "object", "additionalProperties": False, "properties": {
                "title": {"type": ["string", "null"], "minLength": 1, "maxLength": 255,
                          "pattern": r"\S"},
                "model": {"type": ["string", "null"], "minLength": 1, "maxLength": 1024},
                "params": {"oneOf": [ref("ConversationParams"), {"type": "null"}]}}},
        "ConversationMessageRequest": {
            "type": "object", "required": ["role"], "additionalProperties": False,
            "properties": {
                "role": {"enum": list(ROLES)}, "content": {"type": "string"},
                "parent_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 64},
                "model": {"type": ["string", "null"], "minLength": 1, "maxLength": 1024},
                "status": {"enum": list(STATUSES)}, "stats": stats}},
        "ConversationMessageUpdate": {
            "type": "object", "additionalProperties": False, "minProperties": 1,
            "properties": {"content": {"type": "string"}, "status": {"enum": list(STATUSES)},
                           "stats": stats}},
        "AppModel": {"type": "object", "required": ["id", "source", "request_defaults"],
                     "properties": {"id": {"type": "string"},
                                    "source": {"enum": ["alias", "hf-cache", "directory",
                                                        "package", "path", "remote",
                                                        "router"]},
                                    "request_defaults": {"type": "object"}}},
    }
    clash = panel_schemas.keys() & schemas.keys()
    assert not clash, f"schema names used twice: {sorted(clash)}"
    schemas.update(panel_schemas)
    errors = {"400": error, "404": error}
    conv_id = path_param("conversation_id", "conversation id")
    msg_id = path_param("message_id", "message id")
    tag = "conversations"
    update_body = {"allOf": [ref("ConversationRequest"), {"minProperties": 1}]}
    paths.update({
        "/app/models": {"get": op(
            "Models you may use, with their source and request defaults",
            {"200": json(page_of(ref("AppModel"))), "400": error},
            params=page_params, tag="models")},
        "/app/conversations": {
            "get": op("Your conversations, newest activity first; ?q= searches titles and "
                      "message text", {"200": json(page_of(ref("ConversationSummary"))),
                                       "400": error},
                      params=[*page_params, query_param("q", {"type": "string",
                                                              "maxLength": 200},
                                                        "search text")], tag=tag),
            "post": op("Start a conversation; without a title it gets one from the first "
                       "question", {"201": json(ref("Conversation"), "Created"), "400": error},
                       body=ref("ConversationRequest"), tag=tag),
        },
        "/app/conversations/{conversation_id}": {
            "get": op("One conversation with every message", {"200": json(ref("Conversation")),
                                                              **errors},
                      params=[conv_id], tag=tag),
            "put": op("Rename, change its model or parameters",
                      {"200": json(ref("Conversation")), **errors}, params=[conv_id],
                      body=update_body, tag=tag),
            "delete": op("Delete it and its messages", {"204": {"description": "Deleted"},
                                                        **errors}, params=[conv_id], tag=tag),
        },
        "/app/conversations/{conversation_id}/export": {"get": op(
            "Export as Markdown (the current thread) or JSON (every branch)",
            {"200": {"description": "OK", "content": {
                "text/markdown": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}}}}, **errors},
            params=[conv_id, query_param("format", {"enum": ["markdown", "json"]},
                                         "markdown (default) or json"),
                    query_param("leaf", {"type": "string"},
                                "Markdown: the thread ending at this message")], tag=tag)},
        "/app/conversations/{conversation_id}/messages": {"post": op(
            "Add a message; a sibling of an existing one makes a branch",
            {"201": json(ref("ConversationMessage"), "Created"), **errors}, params=[conv_id],
            body=ref("ConversationMessageRequest"), tag=tag)},
        "/app/conversations/{conversation_id}/messages/{message_id}": {"put": op(
            "Update a reply while it streams, then mark it complete or cut off",
            {"200": json(ref("ConversationMessage")), **errors}, params=[conv_id, msg_id],
            body=ref("ConversationMessageUpdate"), tag=tag)},
    })
