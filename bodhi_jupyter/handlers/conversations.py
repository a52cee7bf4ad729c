"""The panel's conversations under ``bodhi/app/conversations``: thin HTTP over
ConversationStore. Somebody else's conversation answers 404, whatever the caller's role."""

from __future__ import annotations

import re

from tornado import web

from ..conversations import (
    MAX_QUERY,
    check_content,
    check_model,
    check_params,
    check_stats,
    check_status,
    check_title,
    export_json,
    export_markdown,
)
from ..errors import invalid
from ..jsonbody import parse_json_object
from .base import BodhiHandler, requires

CREATE_FIELDS = ("title", "model", "params")
MESSAGE_FIELDS = ("role", "content", "parent_id", "model", "status", "stats")
MESSAGE_UPDATE_FIELDS = ("content", "status", "stats")


def _reject_unknown(body: dict, allowed: tuple[str, ...]) -> None:
    for key in body:
        if key not in allowed:
            raise invalid(f"Unknown field '{key}'; allowed: {', '.join(allowed)}", param=key,
                          code="unknown_field")


def _parent_id(value) -> str | None:
    if value is not None and (not isinstance(value, str) or not value or len(value) > 64):
        raise invalid("'parent_id' must be a message id or null", param="parent_id")
    return value


class ConversationBase(BodhiHandler):
    @property
    def store(self):
        return self.bodhi.conversations


class ConversationsHandler(ConversationBase):
    @web.authenticated
    @requires("read")
    async def get(self):
        page = self.page()
        query = self.get_query_argument("q", None)
        if query is not None and len(query) > MAX_QUERY:
            raise invalid(f"'q' must be at most {MAX_QUERY} characters", param="q")
        items, total = self.store.list(self.owner, query or None, page.offset, page.page_size)
        self.finish(page.body([c.json() for c in items], total))

    @web.authenticated
    @requires("write")
    async def post(self):
        body = parse_json_object(self.request.body)
        _reject_unknown(body, CREATE_FIELDS)
        title = check_title(body["title"]) if body.get("title") is not None else None
        conv = self.store.create(self.owner, title, check_model(body.get("model")),
                                 check_params(body.get("params") or {}))
        self.set_status(201)
        self.set_header("Location", f"{self.request.path.rstrip('/')}/{conv.id}")
        self.finish(conv.json())


class ConversationHandler(ConversationBase):
    @web.authenticated
    @requires("read")
    async def get(self, conversation_id: str):
        self.finish(self.store.get(self.owner, conversation_id).json())

    @web.authenticated
    @requires("write")
    async def put(self, conversation_id: str):
        body = parse_json_object(self.request.body)
        _reject_unknown(body, CREATE_FIELDS)
        if not body:
            raise invalid("Give a new 'title', 'model' and/or 'params'",
                          code="missing_required_field")
        conv = self.store.update(
            self.owner, conversation_id,
            title=check_title(body["title"]) if body.get("title") is not None else None,
            model=check_model(body.get("model")), set_model="model" in body,
            params=check_params(body["params"]) if body.get("params") is not None else None)
        self.finish(conv.json())

    @web.authenticated
    @requires("write")
    async def delete(self, conversation_id: str):
        self.store.delete(self.owner, conversation_id)
        self.set_status(204)
        self.finish()


class ConversationExportHandler(ConversationBase):
    @web.authenticated
    @requires("read")
    async def get(self, conversation_id: str):
        fmt = self.get_query_argument("format", "markdown")
        if fmt not in ("markdown", "json"):
            raise invalid("'format' must be markdown or json", param="format")
        leaf = self.get_query_argument("leaf", None) or None
        conv = self.store.get(self.owner, conversation_id)
        name = re.sub(r"[^\w.-]+", "-", conv.title).strip("-")[:60] or "conversation"
        if fmt == "json":
            text, kind, ext = export_json(conv), "application/json", "json"
        else:
            text, kind, ext = export_markdown(conv, leaf), "text/markdown", "md"
        self.set_header("Content-Type", f"{kind}; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="{name}.{ext}"')
        web.RequestHandler.finish(self, text.encode())  # APIHandler.finish forces JSON


class MessagesHandler(ConversationBase):
    @web.authenticated
    @requires("write")
    async def post(self, conversation_id: str):
        body = parse_json_object(self.request.body)
        _reject_unknown(body, MESSAGE_FIELDS)
        if body.get("role") is None:
            raise invalid("'role' is required", param="role", code="missing_required_field")
        message = self.store.add_message(
            self.owner, conversation_id, body["role"], check_content(body.get("content", "")),
            parent_id=_parent_id(body.get("parent_id")), model=check_model(body.get("model")),
            status=check_status(body.get("status", "complete")),
            stats=check_stats(body.get("stats")))
        self.set_status(201)
        self.finish(message.json())


class MessageHandler(ConversationBase):
    @web.authenticated
    @requires("write")
    async def put(self, conversation_id: str, message_id: str):
        body = parse_json_object(self.request.body)
        _reject_unknown(body, MESSAGE_UPDATE_FIELDS)
        if not body:
            raise invalid("Give 'content', 'status' and/or 'stats'",
                          code="missing_required_field")
        message = self.store.update_message(
            self.owner, conversation_id, message_id,
            content=check_content(body["content"]) if "content" in body else None,
            status=check_status(body["status"]) if "status" in body else None,
            stats=check_stats(body.get("stats")))
        self.finish(message.json())


default_handlers = [
    (r"bodhi/app/conversations", ConversationsHandler),
    (r"bodhi/app/conversations/([^/]+)", ConversationHandler),
    (r"bodhi/app/conversations/([^/]+)/export", ConversationExportHandler),
    (r"bodhi/app/conversations/([^/]+)/messages", MessagesHandler),
    (r"bodhi/app/conversations/([^/]+)/messages/([^/]+)", MessageHandler),
]
