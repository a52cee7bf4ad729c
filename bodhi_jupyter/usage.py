"""Usage records: one per inference request, written in batches off the event loop
(``store/batches.py``), and aggregated for ``GET bodhi/app/usage``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING


from .errors import BodhiAPIError
from .store.batches import BatchWriter

if TYPE_CHECKING:  # SQLAlchemy loads when usage is first written or read
    from .store.database import Database


@dataclass
class UsageEntry:
    """What one inference request cost; also what the metrics count."""

    user: str
    token_id: str | None
    model: str
    endpoint: str
    stream: bool
    status: int
    duration_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    notebook: str | None = None  # the notebook whose kernel token made the request
    groups: tuple[str, ...] = ()  # the caller's JupyterHub groups (usage by group)


#: a client that hung up before the reply ended (nginx's "client closed request"): recorded,
#: but not an error of ours
CLIENT_GONE = 499


# -- token counts from engine replies --------------------------------------------------------
def _counts(obj) -> tuple[int, int] | None:
    """(prompt, completion) from a ``usage`` object (OpenAI's ``prompt_tokens``, or the
    ``input_tokens`` of the Responses and Anthropic APIs, nested in ``response`` on a
    Responses stream's last event) or from llama-server's ``timings``."""
    if not isinstance(obj, dict):
        return None
    usage = obj.get("usage")
    if not isinstance(usage, dict) and isinstance(obj.get("response"), dict):
        usage = obj["response"].get("usage")
    if isinstance(usage, dict):
        if isinstance(usage.get("prompt_tokens"), int):
            completion = usage.get("completion_tokens")
            return usage["prompt_tokens"], completion if isinstance(completion, int) else 0
        if isinstance(usage.get("input_tokens"), int):
            # Anthropic counts prompt-cache hits apart; the Responses API includes them
            prompt = sum(v for k in ("input_tokens", "cache_read_input_tokens",
                                     "cache_creation_input_tokens")
                         if isinstance(v := usage.get(k), int))
            output = usage.get("output_tokens")
            return prompt, output if isinstance(output, int) else 0
    timings = obj.get("timings")
    if isinstance(timings, dict) and isinstance(timings.get("predicted_n"), int):
        prompt = sum(v for k in ("cache_n", "prompt_n")
                     if isinstance(v := timings.get(k), int))
        return prompt, timings["predicted_n"]
    return None


def counts_from_body(body: bytes) -> tuple[int, int]:
    """Token counts of a non-streaming reply. The ``usage`` object is found from the end
    and decoded alone, so a large embeddings reply is not parsed whole."""
    at = len(body)
    decoder = json.JSONDecoder()
    while (at := body.rfind(b'"usage"', 0, at)) > 0:
        if body[at - 1:at] != b"\\":  # not inside a string
            rest = body[at + 7:].lstrip()
            if rest[:1] == b":":
                try:
                    value, _ = decoder.raw_decode(rest[1:].lstrip().decode("utf-8"))
                except (ValueError, UnicodeDecodeError):
                    break
                found = _counts({"usage": value})
                if found:
                    return found
                break
    try:
        return _counts(json.loads(body)) or (0, 0)
    except (ValueError, UnicodeDecodeError):
        return 0, 0


def _events(chunks: Iterable[bytes]) -> list[dict]:
    """The JSON objects of the ``data:`` lines of server-sent events (``event:`` lines and
    pieces that do not parse, such as an event cut at the start, are skipped)."""
    out = []
    for event in b"".join(chunks).decode("utf-8", "replace").split("\n\n"):
        data = "".join(line[5:].strip() for line in event.strip().splitlines()
                       if line.startswith("data:"))
        if data.startswith("{"):
            try:
                obj = json.loads(data)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
    return out


def counts_from_stream_tail(chunks: Iterable[bytes]) -> tuple[int, int]:
    """Token counts from the last pieces of an event stream: the last event that carries
    ``usage`` (chat with ``stream_options.include_usage``; the Responses API's
    ``response.completed``) or llama-server's ``timings`` (on its final chunk)."""
    best = None
    for obj in reversed(_events(chunks)):
        if isinstance(obj.get("usage"), dict) or isinstance(obj.get("response"), dict):
            found = _counts(obj)
            if found:
                return found
        if best is None:
            best = _counts(obj)
    return best or (0, 0)


def counts_from_anthropic_stream(head: Iterable[bytes],
                                 tail: Iterable[bytes]) -> tuple[int, int]:
    """An Anthropic Messages stream states its input tokens in ``message_start`` (the
    first event) and its output tokens in ``message_delta`` (near the end)."""
    prompt = completion = 0
    for obj in _events(head):
        if obj.get("type") == "message_start" and isinstance(obj.get("message"), dict):
            prompt, completion = _counts(obj["message"]) or (0, 0)
    for obj in _events(tail):
        usage = obj.get("usage") if obj.get("type") == "message_delta" else None
        if isinstance(usage, dict):
            if isinstance(usage.get("output_tokens"), int):
                completion = usage["output_tokens"]
            if isinstance(usage.get("input_tokens"), int):  # newer streams repeat it
                prompt = max(prompt, (_counts(obj) or (0, 0))[0])
    return prompt, completion


# -- recording -------------------------------------------------------------------------------
class UsageRecorder(BatchWriter):
    """Queues usage entries and writes them from one background thread (see BatchWriter):
    a finished request's record is committed within 20 ms."""

    thread_name = "bodhi-usage-writer"

    def record(self, entry: UsageEntry) -> None:
        """Cheap enough for the request path: no I/O here."""
        self._put(entry)

    def _write(self, batch: list[UsageEntry]) -> None:
        from sqlalchemy import insert

        from .store.tables import usage_groups, usage_records as table
        try:
            with self.database.begin() as conn:
                rows = [_row(e) for e in batch]
                if not any(e.groups for e in batch):
                    conn.execute(insert(table), rows)
                    return
                # the new ids, in the order of the rows, to file each under its groups
                ids = conn.execute(insert(table).returning(
                    table.c.id, sort_by_parameter_order=True), rows).scalars().all()
                conn.execute(insert(usage_groups), [
                    {"usage_id": i, "group_name": g}
                    for i, e in zip(ids, batch) for g in dict.fromkeys(e.groups)])
        except Exception as e:  # usage is bookkeeping: never take the server down
            if self.log:
                self.log.error("bodhi: could not write %d usage record(s): %s", len(batch), e)


def _row(entry: UsageEntry) -> dict:
    row = dict(entry.__dict__)  # dataclasses.asdict deep-copies: 16 us against 1
    del row["groups"]  # a table of their own: usage_groups
    row["at"] = entry.at.astimezone(timezone.utc)  # SQLite keeps wall time, not the zone
    return row


# -- reading ---------------------------------------------------------------------------------
GROUPS = ("model", "token", "day", "user", "notebook", "group")


def parse_group_by(raw: str | None) -> list[str]:
    if not raw:
        return ["model"]
    groups = [g.strip() for g in raw.split(",") if g.strip()]
    bad = [g for g in groups if g not in GROUPS]
    if bad or not groups:
        raise BodhiAPIError(400, f"group_by must be a comma-separated list of "
                            f"{', '.join(GROUPS)}; got {raw!r}", code="invalid_value",
                            param="group_by")
    return list(dict.fromkeys(groups))


def parse_time(raw: str | None, param: str) -> datetime | None:
    """An ISO 8601 date or time; without a zone it is UTC."""
    if raw is None or raw == "":
        return None
    # an unescaped "+01:00" in a query string arrives as " 01:00"
    text = re.sub(r" (\d\d:?\d\d)$", r"+\1", raw.strip()) if "T" in raw else raw.strip()
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BodhiAPIError(400, f"{param} must be an ISO 8601 date or time, e.g. "
                            "2025-01-31T12:00:00Z", code="invalid_value", param=param) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class UsageQuery:
    """Aggregates usage records in the database."""

    def __init__(self, database: Database):
        self.database = database

    def _day(self):
        from sqlalchemy import Date, cast, func

        from .store.tables import usage_records as u
        if self.database.engine.dialect.name == "postgresql":
            return cast(func.timezone("UTC", u.c.at), Date)
        return func.date(u.c.at)  # SQLite keeps the UTC time as text

    def aggregate(self, group_by: list[str], users: list[str] | None = None,
                  since: datetime | None = None, until: datetime | None = None,
                  offset: int = 0, limit: int = 50) -> tuple[list[dict], int]:
        """Rows of ``{group keys..., requests, prompt_tokens, completion_tokens, errors,
        avg_duration_ms}`` and the number of groups. ``users`` None means everyone;
        ``until`` is exclusive. Times are compared in UTC."""
        from sqlalchemy import case, func, select

        from .store.tables import api_tokens, usage_groups, usage_records
        u, ug = usage_records.c, usage_groups.c
        columns = {"model": u.model, "token": u.token_id,
                   "day": self._day(), "user": u.user,
                   "notebook": u.notebook, "group": ug.group_name}
        keys = [columns[g].label(g if g != "token" else "token_id") for g in group_by]
        where = []
        if users is not None:
            where.append(u.user.in_(users))
        if since is not None:
            where.append(u.at >= _naive_utc(since, self.database))
        if until is not None:
            where.append(u.at < _naive_utc(until, self.database))
        stmt = (select(*keys,
                       func.count().label("requests"),
                       func.coalesce(func.sum(u.prompt_tokens), 0).label(
                           "prompt_tokens"),
                       func.coalesce(func.sum(u.completion_tokens), 0).label(
                           "completion_tokens"),
                       func.coalesce(func.sum(case(
                           ((u.status >= 400) & (u.status != CLIENT_GONE),
                            1), else_=0)), 0).label("errors"),
                       func.avg(u.duration_ms).label("avg_duration_ms"))
                .where(*where).group_by(*keys))
        if "group" in group_by:  # a request counts once in each of its groups; null: none
            stmt = stmt.select_from(usage_records).outerjoin(
                usage_groups, ug.usage_id == u.id)
        with self.database.read() as conn:
            total = conn.scalar(select(func.count()).select_from(stmt.subquery()))
            rows = conn.execute(stmt.order_by(*(k.asc().nulls_first() for k in keys)).offset(offset).limit(limit)).mappings().all()
            token_ids = {r["token_id"] for r in rows if r.get("token_id")}
            t = api_tokens.c
            names = dict(conn.execute(select(t.id, t.name)
                                      .where(t.id.in_(token_ids))).all()) if token_ids \
                else {}
        out = []
        for r in rows:
            item = {}
            for g in group_by:
                if g == "token":
                    item["token_id"] = r["token_id"]
                    item["token_name"] = names.get(r["token_id"])
                elif g == "day":
                    item["day"] = str(r["day"])
                else:
                    item[g] = r[g]
            item.update(requests=int(r["requests"]), prompt_tokens=int(r["prompt_tokens"]),
                        completion_tokens=int(r["completion_tokens"]), errors=int(r["errors"]),
                        avg_duration_ms=round(float(r["avg_duration_ms"] or 0.0), 3))
            out.append(item)
        return out, int(total or 0)


def _naive_utc(value: datetime, database: Database) -> datetime:
    """SQLite stores the UTC wall time without a zone; compare with the same."""
    if database.engine.dialect.name == "sqlite":
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value
