"""``GET bodhi/app/audit``: the audit log, newest first (admin only). Thin HTTP over
``AuditLog.query``."""

from __future__ import annotations

import asyncio

from tornado import web

from ..errors import invalid
from ..usage import parse_time
from .base import BodhiHandler, requires


def text_param(raw: str | None, name: str) -> str | None:
    """A name to match exactly; 400 for one no stored name can be (PostgreSQL refuses NUL)."""
    if not raw:
        return None
    if len(raw) > 255 or "\x00" in raw:
        raise invalid(f"'{name}' must be at most 255 characters, without NUL", param=name)
    return raw


class AuditHandler(BodhiHandler):
    @web.authenticated
    @requires("admin")
    async def get(self):
        page = self.page()
        since = parse_time(self.get_argument("since", None), "since")
        until = parse_time(self.get_argument("until", None), "until")
        audit = self.bodhi.audit
        await audit.flush()  # an admin sees the change they just made
        rows, total = await asyncio.to_thread(
            audit.query, user=text_param(self.get_argument("user", None), "user"),
            action=text_param(self.get_argument("action", None), "action"),
            since=since, until=until,
            offset=page.offset, limit=page.page_size)
        self.finish(page.body(rows, total))


default_handlers = [(r"bodhi/app/audit", AuditHandler)]
