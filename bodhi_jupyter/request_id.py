"""Request ids: one per bodhi request, sent back as ``X-Request-Id`` and carried by the log
lines of that request, so a client's report can be matched with the server's log.

A client's own id is kept when it is short and plain (it may be shown in logs, so anything
else is replaced); otherwise a short random one is made.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

_SANE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_current: ContextVar[str | None] = ContextVar("bodhi_request_id", default=None)


def request_id_from(header: str | None) -> str:
    if header and _SANE.fullmatch(header):
        return header
    return secrets.token_hex(8)


def bind_request_id(request_id: str) -> None:
    """Make the id visible to code the request's task calls (e.g. an engine start)."""
    _current.set(request_id)


def log_suffix() -> str:
    """`` [request_id=...]`` inside a request's task, else nothing."""
    rid = _current.get()
    return f" [request_id={rid}]" if rid else ""
