"""``GET bodhi/app/audit``: the audit log, newest first (admin only). Thin HTTP over
``AuditLog.query``."""

from __future__ import annotations

import asyncio

from tornado import web

from ..usage import parse_time
from .base import BodhiHandler, requires


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
            audit.query, user=self.get_argument("user", None) or None,
            action=self.get_argument("action", None) or None, since=since, until=until,
            offset=page.offset, limit=page.page_size)
        self.finish(page.body(rows, total))


default_handlers = [(r"bodhi/app/audit", AuditHandler)]
