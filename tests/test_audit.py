"""The audit log without HTTP: one log line and one row per entry, secrets masked, and the
query's filters, order and pages, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from bodhi_jupyter.audit import MASK, AuditLog, action_filter, scrub
from bodhi_jupyter.store.database import Database
from bodhi_jupyter.store.tables import audit_log

TOKEN = "bodhi_" + "Q" * 20 + "x9-_" * 5  # shaped like a minted token


@pytest.fixture
def database(db_url):
    db = Database(url=db_url)
    db.upgrade()
    yield db
    db.dispose()


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def log():
    logger = logging.getLogger("bodhi-test-audit")
    logger.setLevel(logging.INFO)
    lines = Lines()
    logger.addHandler(lines)
    logger.lines = lines.lines
    yield logger
    logger.removeHandler(lines)


@pytest.fixture
def audit(database, log):
    a = AuditLog(database, log)
    yield a
    a.close()


def rows(database) -> list:
    with database.read() as conn:
        return conn.execute(select(audit_log).order_by(audit_log.c.id)).all()


async def test_an_entry_is_one_log_line_and_one_row(audit, database, log):
    audit.record("token.create", actor="ann", via="jupyter", address="10.0.0.7",
                 target="tok1", details={"name": "nb", "scope": "read"}, request_id="r-1")
    await audit.flush()
    (line,) = log.lines
    assert line.startswith("bodhi-audit {")
    logged = json.loads(line[len("bodhi-audit "):])
    (row,) = rows(database)
    assert (row.action, row.actor, row.via, row.address, row.target, row.details,
            row.request_id) == ("token.create", "ann", "jupyter", "10.0.0.7", "tok1",
                                {"name": "nb", "scope": "read"}, "r-1")
    (shown,), total = audit.query()
    assert total == 1 and shown == {"id": row.id, **logged}
    assert datetime.fromisoformat(shown["at"]).tzinfo is not None


async def test_no_secret_reaches_the_row_or_the_log(audit, database, log):
    audit.record("upstream.update", actor="ann", via="bodhi_token:abc", address="::1",
                 target="remote", details={
                     "api_key": "sk-live-123456", "changes": {"password": "hunter2"},
                     "note": f"pasted {TOKEN} by mistake", "token": TOKEN,
                     "also": [TOKEN], "key_state": "set"})
    audit.record("upstream.update", actor="ann", via="jupyter", address=None,
                 target="remote", details={"api_key": "cleared"})
    await audit.flush()
    dump = json.dumps([{c.name: getattr(r, c.name) for c in audit_log.columns}
                       for r in rows(database)], default=str) + "\n".join(log.lines)
    for secret in ("sk-live-123456", "hunter2", TOKEN, TOKEN[6:]):
        assert secret not in dump
    first, second = (r.details for r in rows(database))
    assert first["api_key"] == MASK and first["changes"] == {"password": MASK}
    assert first["note"] == f"pasted {MASK} by mistake" and first["also"] == [MASK]
    assert first["key_state"] == "set" and second == {"api_key": "cleared"}


def test_scrub_keeps_plain_values():
    at = datetime(2025, 1, 2, tzinfo=timezone.utc)
    assert scrub({"name": "bodhi_model", "n": 3, "on": True, "none": None, "at": at,
                  "scope": ["read"]}) == {"name": "bodhi_model", "n": 3, "on": True,
                                          "none": None, "at": at.isoformat(),
                                          "scope": ["read"]}
    assert len(scrub("x" * 5000)) < 1100


def test_action_filter():
    assert action_filter(None) is None and action_filter("") is None
    assert action_filter("token.create") == ("exact", "token.create")
    assert action_filter("token.") == action_filter("token.*") == ("prefix", "token.")


async def test_query_filters_order_and_pages(audit, database):
    base = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
    plan = [("token.create", "ann"), ("token.update", "ann"), ("setting.update", "bob"),
            ("tokenizer.odd", "bob"), ("alias.create", "ann")]
    for i, (action, actor) in enumerate(plan):
        audit.record(action, actor=actor, via="jupyter", address="127.0.0.1",
                     target=f"t{i}", at=base + timedelta(minutes=i))
    await audit.flush()

    got, total = audit.query()
    assert total == 5 and [e["target"] for e in got] == ["t4", "t3", "t2", "t1", "t0"]
    got, total = audit.query(user="ann")
    assert total == 3 and [e["target"] for e in got] == ["t4", "t1", "t0"]
    got, total = audit.query(action="token.")
    assert total == 2 and {e["action"] for e in got} == {"token.create", "token.update"}
    got, total = audit.query(action="token.update")
    assert total == 1 and got[0]["target"] == "t1"
    got, total = audit.query(action="token")  # exact: no action is called that
    assert total == 0
    # since inclusive, until exclusive, in UTC whatever the zone given
    plus2 = timezone(timedelta(hours=2))
    got, total = audit.query(since=(base + timedelta(minutes=1)).astimezone(plus2),
                             until=base + timedelta(minutes=3))
    assert total == 2 and [e["target"] for e in got] == ["t2", "t1"]
    got, total = audit.query(user="bob", action="setting.", since=base)
    assert total == 1 and got[0]["target"] == "t2"
    got, total = audit.query(offset=2, limit=2)
    assert total == 5 and [e["target"] for e in got] == ["t2", "t1"]
    assert audit.query(offset=10) == ([], 5)
    assert got[0]["at"] == (base + timedelta(minutes=2)).isoformat()


async def test_after_close_nothing_is_queued(database, log):
    audit = AuditLog(database, log)
    audit.record("engine.load", actor="ann", via="jupyter", address=None)
    audit.close()  # writes what is queued
    audit.record("engine.unload", actor="ann", via="jupyter", address=None)
    await audit.flush()  # returns at once
    assert [r.action for r in rows(database)] == ["engine.load"]
