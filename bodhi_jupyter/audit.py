"""The audit log: every change that matters to an admin (tokens, settings, aliases,
upstreams, engines loaded or unloaded by hand, pulls, quota refusals), with who, when, from
which address and through which credential.

``record`` is cheap on the request path: it writes one structured log line
(``bodhi-audit {json}``) and queues the entry for the shared batch writer
(``store/batches.py``). No entry holds a secret: the caller passes only non-secret values,
and anything that still looks like a credential is masked here.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .auth.tokens import TOKEN_PREFIX
from .store.batches import BatchWriter
from .usage import _naive_utc

if TYPE_CHECKING:
    from .store.database import Database

#: every action the server records (``quota.refused`` comes from the quota policy)
ACTIONS = (
    "token.create", "token.update", "token.delete",
    "setting.update", "setting.reset",
    "alias.create", "alias.update", "alias.delete", "alias.import",
    "upstream.create", "upstream.update", "upstream.delete",
    "engine.load", "engine.unload",
    "pull.start", "pull.cancel", "pull.retry",
    "quota.refused",
)

#: detail keys whose string value is a credential unless it only says whether one is set
_SECRET_KEY = re.compile(r"(^|_)(token|api_key|apikey|secret|password|authorization)$",
                         re.IGNORECASE)
_SAYS_ONLY = {"set", "cleared", "unchanged"}
#: a bodhi token inside any text (the secret part is at least 32 characters)
_TOKEN_IN_TEXT = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_\-]{24,}")
MASK = "***"
MAX_TEXT = 1024  # one detail value's text; longer ones are cut


@dataclass
class AuditEntry:
    action: str
    actor: str
    via: str  # "jupyter", "hub" or "bodhi_token:<token id>"
    address: str | None
    target: str | None = None
    details: dict = field(default_factory=dict)
    request_id: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def to_json(self, entry_id: int | None = None) -> dict:
        out = {"action": self.action, "at": self.at.isoformat(), "actor": self.actor,
               "via": self.via, "address": self.address, "target": self.target,
               "details": self.details, "request_id": self.request_id}
        return out if entry_id is None else {"id": entry_id, **out}


def scrub(value: Any, key: str = "") -> Any:
    """A detail value with anything that is or looks like a credential masked, as JSON."""
    if isinstance(value, dict):
        return {str(k): scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [scrub(v, key) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    if _SECRET_KEY.search(key) and text not in _SAYS_ONLY:
        return MASK
    text = _TOKEN_IN_TEXT.sub(MASK, text)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."


def action_filter(raw: str | None):
    """``token.update`` matches that action; ``token.`` or ``token.*`` every token action."""
    if not raw:
        return None
    raw = raw.strip()
    if raw.endswith("*"):
        raw = raw[:-1]
    return ("prefix", raw) if raw.endswith(".") else ("exact", raw)


class AuditLog(BatchWriter):
    """Records audit entries (log line now, database row within ~20 ms) and reads them."""

    thread_name = "bodhi-audit-writer"

    def __init__(self, database: Database, log=None, **kwargs):
        super().__init__(database, log=log or logging.getLogger("bodhi"), **kwargs)

    def record(self, action: str, *, actor: str, via: str, address: str | None,
               target: str | None = None, details: dict | None = None,
               request_id: str | None = None, at: datetime | None = None) -> AuditEntry:
        """Queue one entry and log it as one JSON line; no I/O on the caller's thread
        beyond the log handler's. ``at`` defaults to now."""
        entry = AuditEntry(action=action, actor=actor, via=via, address=address,
                           target=None if target is None else scrub(target),
                           details=scrub(dict(details or {})), request_id=request_id,
                           at=at or datetime.now(timezone.utc))
        self.log.info("bodhi-audit %s", json.dumps(entry.to_json(), sort_keys=True,
                                                   default=str))
        self._put(entry)
        return entry

    def _write(self, batch: list[AuditEntry]) -> None:
        from sqlalchemy import insert

        from .store.tables import audit_log
        rows = [{"at": e.at.astimezone(timezone.utc), "actor": e.actor, "via": e.via,
                 "address": e.address, "action": e.action, "target": e.target,
                 "details": e.details, "request_id": e.request_id} for e in batch]
        try:
            with self.database.begin() as conn:
                conn.execute(insert(audit_log), rows)
        except Exception as e:  # the log line is out already; never take the server down
            self.log.error("bodhi: could not write %d audit entries: %s", len(batch), e)

    # -- reading ---------------------------------------------------------------------------
    def query(self, user: str | None = None, action: str | None = None,
              since: datetime | None = None, until: datetime | None = None,
              offset: int = 0, limit: int = 50) -> tuple[list[dict], int]:
        """Entries newest first and how many match. ``action`` exact or a prefix ending in
        ``.``; ``since`` inclusive, ``until`` exclusive. Blocking: run it off the loop."""
        from sqlalchemy import func, select

        from .store.tables import audit_log
        A = audit_log.c
        where = []
        if user:
            where.append(A.actor == user)
        wanted = action_filter(action)
        if wanted is not None:
            kind, text = wanted
            if kind == "exact":
                where.append(A.action == text)
            else:  # no LIKE: '_' in an action name is not a wildcard
                where.append(func.substr(A.action, 1, len(text)) == text)
        if since is not None:
            where.append(A.at >= _naive_utc(since, self.database))
        if until is not None:
            where.append(A.at < _naive_utc(until, self.database))
        with self.database.read() as conn:
            total = conn.scalar(select(func.count()).select_from(audit_log).where(*where))
            rows = conn.execute(select(audit_log).where(*where)
                                .order_by(A.at.desc(), A.id.desc())
                                .offset(offset).limit(limit)).all()
            out = []
            for r in rows:
                at = r.at if r.at.tzinfo else r.at.replace(tzinfo=timezone.utc)
                out.append(AuditEntry(action=r.action, actor=r.actor, via=r.via,
                                      address=r.address, target=r.target,
                                      details=r.details or {}, request_id=r.request_id,
                                      at=at.astimezone(timezone.utc)).to_json(r.id))
        return out, int(total or 0)
