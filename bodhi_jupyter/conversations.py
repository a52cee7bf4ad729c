"""Conversations of the JupyterLab panel, kept on the server so that they survive a browser
reload, a second tab and a server restart.

Messages form a tree (``parent_id``): editing a question or regenerating an answer adds a
sibling, so no earlier answer is lost. A reply that was cut off (Stop, an engine crash, the
server gone) keeps what arrived and says so in its ``status``. Every method takes the owner:
somebody else's conversation does not exist for the caller (404), whatever their role.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from .errors import BodhiAPIError, invalid
from .store.database import Database

if TYPE_CHECKING:  # SQLAlchemy is imported when storage is first used, not at start-up
    from sqlalchemy.engine import Row

ROLES = ("system", "user", "assistant")
#: "streaming" while the panel is still writing a reply; "cut_off" when it never finished
STATUSES = ("complete", "streaming", "cut_off")
#: a reply still "streaming" without an update for this long was abandoned (tab closed)
STALE_STREAM = timedelta(seconds=60)
MAX_TITLE = 255
AUTO_TITLE_CHARS = 60
MAX_CONTENT = 1_000_000  # characters per message
MAX_QUERY = 200
PARAM_LIMITS = {"temperature": (0, 2), "top_p": (0, 1), "max_tokens": (1, 1_000_000),
                "seed": (-2**63, 2**63 - 1)}
PARAMS = ("system_prompt", "temperature", "top_p", "max_tokens", "seed", "stop")
STATS = ("prompt_tokens", "completion_tokens", "tokens_per_second", "ttft_ms", "error",
         "finish_reason")


def _utc(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:  # SQLite hands back naive datetimes
        return dt.replace(tzinfo=timezone.utc)
    return dt


def _iso(dt: datetime | None) -> str | None:
    return _utc(dt).isoformat() if dt else None


def not_found(conversation_id: str) -> BodhiAPIError:
    return BodhiAPIError(404, f"No conversation with id '{conversation_id}'",
                         code="conversation_not_found")


# -- checking what callers send ------------------------------------------------------------
def _reject_unknown(body: dict, allowed: tuple[str, ...], where: str = "") -> None:
    for key in body:
        if key not in allowed:
            raise invalid(f"Unknown field '{where}{key}'; allowed: {', '.join(allowed)}",
                          param=f"{where}{key}", code="unknown_field")


def check_title(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid("'title' must be a non-empty string", param="title")
    if len(value.strip()) > MAX_TITLE:
        raise invalid(f"'title' must be at most {MAX_TITLE} characters", param="title")
    return value.strip()


def check_model(value) -> str | None:
    if value is not None and (not isinstance(value, str) or not value or len(value) > 1024):
        raise invalid("'model' must be a model id or null", param="model")
    return value


def check_params(value) -> dict:
    """Per-conversation request parameters; a key left out (or null) means the model's
    default applies."""
    if not isinstance(value, dict):
        raise invalid("'params' must be an object", param="params")
    _reject_unknown(value, PARAMS, "params.")
    out = {}
    for key, v in value.items():
        if v is None:
            continue
        param = f"params.{key}"
        if key == "system_prompt":
            if not isinstance(v, str) or len(v) > MAX_CONTENT:
                raise invalid(f"'{param}' must be a string", param=param)
        elif key == "stop":
            if isinstance(v, str):
                v = [v]
            if (not isinstance(v, list) or len(v) > 4
                    or not all(isinstance(s, str) and s for s in v)):
                raise invalid(f"'{param}' must be a string or up to 4 strings", param=param)
        else:
            integer = key in ("max_tokens", "seed")
            lo, hi = PARAM_LIMITS[key]
            ok = isinstance(v, int if integer else (int, float)) and not isinstance(v, bool)
            if not ok or not lo <= v <= hi:
                kind = "an integer" if integer else "a number"
                raise invalid(f"'{param}' must be {kind} between {lo} and {hi}", param=param)
        out[key] = v
    return out


def check_stats(value) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("'stats' must be an object", param="stats")
    _reject_unknown(value, STATS, "stats.")
    for key, v in value.items():
        if v is None:
            continue
        textual = key in ("error", "finish_reason")
        if textual and not (isinstance(v, str) and len(v) <= 10_000):
            raise invalid(f"'stats.{key}' must be a string", param=f"stats.{key}")
        if not textual and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0
                            or v > 1e12):
            raise invalid(f"'stats.{key}' must be a non-negative number",
                          param=f"stats.{key}")
    return {k: v for k, v in value.items() if v is not None}


def check_content(value) -> str:
    if not isinstance(value, str):
        raise invalid("'content' must be a string", param="content")
    if len(value) > MAX_CONTENT:
        raise invalid(f"'content' must be at most {MAX_CONTENT} characters", param="content")
    return value


def check_status(value) -> str:
    if value not in STATUSES:
        raise invalid(f"'status' must be one of {', '.join(STATUSES)}", param="status")
    return value


def auto_title(text: str) -> str:
    """A title from the first question: its first line of words, markdown stripped, cut at
    a word boundary."""
    line = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("```")),
                "")
    words = re.sub(r"[#*_`>\[\]]+", "", line).split()
    title = ""
    for w in words:
        if len(title) + len(w) + 1 > AUTO_TITLE_CHARS:
            return (title or w[:AUTO_TITLE_CHARS]) + "…"
        title = f"{title} {w}".strip()
    return title or "New chat"


# -- records as the API shows them ---------------------------------------------------------
@dataclass(frozen=True)
class MessageRecord:
    id: str
    conversation_id: str
    parent_id: str | None
    role: str
    content: str
    model: str | None
    status: str
    stats: dict | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Row) -> "MessageRecord":
        status = row.status
        if status == "streaming" and _utc(row.updated_at) < datetime.now(timezone.utc) - STALE_STREAM:
            status = "cut_off"  # the tab that wrote it went away mid-reply
        return cls(row.id, row.conversation_id, row.parent_id, row.role, row.content,
                   row.model, status, dict(row.stats) if row.stats else None,
                   _utc(row.created_at), _utc(row.updated_at))

    def json(self) -> dict:
        return {"id": self.id, "conversation_id": self.conversation_id,
                "parent_id": self.parent_id, "role": self.role, "content": self.content,
                "model": self.model, "status": self.status, "stats": self.stats,
                "created_at": _iso(self.created_at), "updated_at": _iso(self.updated_at)}


@dataclass(frozen=True)
class ConversationRecord:
    id: str
    owner: str
    title: str
    model: str | None
    params: dict
    created_at: datetime
    updated_at: datetime
    message_count: int = 0
    messages: tuple[MessageRecord, ...] | None = None

    @classmethod
    def of(cls, row: Row, message_count: int = 0,
           messages: list[MessageRecord] | None = None) -> "ConversationRecord":
        return cls(row.id, row.owner, row.title or "New chat", row.model, dict(row.params or {}),
                   _utc(row.created_at), _utc(row.updated_at), message_count,
                   tuple(messages) if messages is not None else None)

    def json(self) -> dict:
        out = {"id": self.id, "title": self.title, "model": self.model, "params": self.params,
               "created_at": _iso(self.created_at), "updated_at": _iso(self.updated_at),
               "message_count": self.message_count}
        if self.messages is not None:
            out["messages"] = [m.json() for m in self.messages]
        return out


def current_thread(messages: tuple[MessageRecord, ...] | list[MessageRecord],
                   leaf: str | None = None) -> list[MessageRecord]:
    """The thread ending at ``leaf``, or the newest branch at every fork."""
    by_id = {m.id: m for m in messages}
    if leaf is not None:
        if leaf not in by_id:
            raise invalid(f"No message '{leaf}' in this conversation", param="leaf")
        out, m = [], by_id[leaf]
        while m is not None and len(out) <= len(by_id):
            out.append(m)
            m = by_id.get(m.parent_id) if m.parent_id else None
        return out[::-1]
    out, parent = [], None
    while len(out) <= len(by_id):
        children = [m for m in messages if m.parent_id == parent]
        if not children:
            break
        newest = max(children, key=lambda m: (m.created_at, m.id))
        out.append(newest)
        parent = newest.id
    return out


# -- the store -----------------------------------------------------------------------------
class ConversationStore:
    def __init__(self, database: Database):
        self.database = database

    def _own(self, conn, owner: str, conversation_id: str) -> Row:
        from sqlalchemy import select

        from .store.tables import conversations as c
        row = conn.execute(select(c).where(c.c.id == conversation_id)).first()
        if row is None or row.owner != owner:
            raise not_found(conversation_id)
        return row

    def create(self, owner: str, title: str | None = None, model: str | None = None,
               params: dict | None = None) -> ConversationRecord:
        from .store.tables import conversations
        now = datetime.now(timezone.utc)
        with self.database.begin() as conn:
            row = conn.execute(conversations.insert().values(
                id=uuid.uuid4().hex, owner=owner, title=title or "", title_auto=title is None,
                model=model, params=params or {}, created_at=now, updated_at=now)
                .returning(conversations)).one()
        return ConversationRecord.of(row, 0, [])

    def list(self, owner: str, query: str | None = None, offset: int = 0,
             limit: int = 50) -> tuple[list[ConversationRecord], int]:
        """Newest activity first; ``query`` matches titles and message text, ignoring case."""
        from sqlalchemy import exists, func, or_, select

        from .store.tables import conversation_messages, conversations
        c, m = conversations.c, conversation_messages.c
        counts = (select(m.conversation_id, func.count().label("n"))
                  .group_by(m.conversation_id).subquery())
        where = [c.owner == owner]
        if query:
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", query.lower()) + "%"
            in_text = exists().where(
                m.conversation_id == c.id,
                func.lower(m.content).like(pattern, escape="\\"))
            where.append(or_(func.lower(c.title).like(pattern, escape="\\"), in_text))
        with self.database.read() as conn:
            total = conn.scalar(select(func.count()).select_from(conversations).where(*where))
            rows = conn.execute(
                select(conversations, func.coalesce(counts.c.n, 0).label("message_count"))
                .outerjoin(counts, counts.c.conversation_id == c.id)
                .where(*where)
                .order_by(c.updated_at.desc(), c.id.desc())
                .offset(offset).limit(limit)).all()
        return [ConversationRecord.of(row, row.message_count) for row in rows], total

    def get(self, owner: str, conversation_id: str) -> ConversationRecord:
        """One conversation with all its messages (every branch), oldest first."""
        from sqlalchemy import select

        from .store.tables import conversation_messages as m
        with self.database.read() as conn:
            row = self._own(conn, owner, conversation_id)
            messages = [MessageRecord.of(r) for r in conn.execute(
                select(m).where(m.c.conversation_id == conversation_id)
                .order_by(m.c.created_at, m.c.id))]
        return ConversationRecord.of(row, len(messages), messages)

    def update(self, owner: str, conversation_id: str, *, title: str | None = None,
               model: str | None = None, params: dict | None = None,
               set_model: bool = False) -> ConversationRecord:
        from .store.tables import conversations as c
        changes: dict = {"updated_at": datetime.now(timezone.utc)}
        if title is not None:
            changes.update(title=title, title_auto=False)
        if set_model:
            changes["model"] = model
        if params is not None:
            changes["params"] = params
        with self.database.begin() as conn:
            self._own(conn, owner, conversation_id)
            conn.execute(c.update().where(c.c.id == conversation_id).values(changes))
        return self.get(owner, conversation_id)

    def delete(self, owner: str, conversation_id: str) -> None:
        from .store.tables import conversation_messages as m, conversations as c
        with self.database.begin() as conn:
            self._own(conn, owner, conversation_id)
            # explicit, so that a database without foreign-key enforcement keeps none
            conn.execute(m.delete().where(m.c.conversation_id == conversation_id))
            conn.execute(c.delete().where(c.c.id == conversation_id))

    def add_message(self, owner: str, conversation_id: str, role: str, content: str,
                    parent_id: str | None = None, model: str | None = None,
                    status: str = "complete", stats: dict | None = None) -> MessageRecord:
        from sqlalchemy import select

        from .store.tables import conversation_messages as m, conversations as c
        if role not in ROLES:
            raise invalid(f"'role' must be one of {', '.join(ROLES)}", param="role")
        now = datetime.now(timezone.utc)
        with self.database.begin() as conn:
            conv = self._own(conn, owner, conversation_id)
            if parent_id is not None:
                parent = conn.execute(select(m.c.conversation_id)
                                      .where(m.c.id == parent_id)).scalar()
                if parent != conversation_id:
                    raise invalid(f"No message '{parent_id}' in this conversation",
                                  param="parent_id")
            row = conn.execute(m.insert().values(
                id=uuid.uuid4().hex, conversation_id=conversation_id, parent_id=parent_id,
                role=role, content=content, model=model, status=status, stats=stats,
                created_at=now, updated_at=now).returning(m)).one()
            changes: dict = {"updated_at": now}
            if conv.title_auto and not conv.title and role == "user" and content.strip():
                changes["title"] = auto_title(content)
            if model and role == "assistant":
                changes["model"] = model
            conn.execute(c.update().where(c.c.id == conversation_id).values(changes))
        return MessageRecord.of(row)

    def update_message(self, owner: str, conversation_id: str, message_id: str, *,
                       content: str | None = None, status: str | None = None,
                       stats: dict | None = None) -> MessageRecord:
        """A streaming reply is written as it grows, then marked complete or cut off."""
        from .store.tables import conversation_messages as m, conversations as c
        now = datetime.now(timezone.utc)
        changes: dict = {"updated_at": now}
        for field, value in (("content", content), ("status", status), ("stats", stats)):
            if value is not None:
                changes[field] = value
        with self.database.begin() as conn:
            self._own(conn, owner, conversation_id)
            row = conn.execute(m.update().where(m.c.id == message_id,
                                                m.c.conversation_id == conversation_id)
                               .values(changes).returning(m)).first()
            if row is None:
                raise BodhiAPIError(404, f"No message '{message_id}' in this conversation",
                                    code="message_not_found")
            conn.execute(c.update().where(c.c.id == conversation_id).values(updated_at=now))
        return MessageRecord.of(row)

    def cut_off_streaming(self, owner: str) -> int:
        """At server start: the owner's replies that were streaming when it stopped never
        finished. (Only the owner's: a shared database serves other people's servers.)"""
        from sqlalchemy import select

        from .store.tables import conversation_messages as m, conversations as c
        mine = select(c.c.id).where(c.c.owner == owner)
        with self.database.begin() as conn:
            return conn.execute(
                m.update().where(m.c.status == "streaming", m.c.conversation_id.in_(mine))
                .values(status="cut_off")).rowcount


# -- export --------------------------------------------------------------------------------
_ROLE_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System"}


def export_markdown(conv: ConversationRecord, leaf: str | None = None) -> str:
    """The current thread (or the one ending at ``leaf``) as Markdown."""
    lines = [f"# {conv.title}", ""]
    if conv.model:
        lines += [f"*Model: {conv.model}*", ""]
    for m in current_thread(conv.messages or (), leaf):
        heading = _ROLE_HEADINGS.get(m.role, m.role)
        if m.role == "assistant" and m.model:
            heading += f" ({m.model})"
        lines += [f"## {heading}", "", m.content.rstrip(), ""]
        if m.status == "cut_off":
            lines += ["*(cut off: the reply did not finish)*", ""]
    return "\n".join(lines).rstrip() + "\n"


def export_json(conv: ConversationRecord) -> str:
    """Everything, every branch included, as the API shows it."""
    return json.dumps({"format": "bodhi-conversation", "version": 1, **conv.json()},
                      indent=2, ensure_ascii=False)
