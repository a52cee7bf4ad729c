"""The database: Alembic migrations on SQLite and PostgreSQL, the SQLite backup taken before
an upgrade, and the JSON columns."""

from __future__ import annotations

import sqlite3

import pytest
from alembic import command
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from bodhi_jupyter.store.database import Database
from bodhi_jupyter.store.tables import model_aliases as aliases


@pytest.fixture
def db(db_url):
    database = Database(url=db_url)
    yield database
    database.dispose()


def test_fresh_database_is_migrated_to_head(db):
    assert db.upgrade() is None  # nothing existed, so there was nothing to back up

    tables = set(inspect(db.engine).get_table_names())
    assert {"model_aliases", "api_tokens", "settings", "usage_records", "upstreams",
            "alembic_version"} <= tables
    columns = {c["name"]: c for c in inspect(db.engine).get_columns("model_aliases")}
    assert set(columns) == {"id", "name", "model", "request_defaults", "server_options",
                            "source", "targets", "created_at", "updated_at"}
    assert columns["model"]["nullable"]  # a router alias has targets instead
    assert db.current_revision() == db.head_revision()
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() \
            == [db.head_revision()]


def test_second_upgrade_is_a_no_op(db, tmp_path):
    db.upgrade()
    with db.begin() as conn:
        conn.execute(aliases.insert().values(name="kept", model="m", source="api"))

    assert db.upgrade() is None
    assert db.current_revision() == db.head_revision()
    with db.read() as conn:
        assert conn.scalars(select(aliases.c.name)).all() == ["kept"]
    assert list(tmp_path.glob("*.bak")) == []


def test_json_columns_round_trip(db):
    db.upgrade()
    request = {"temperature": 0.25, "max_tokens": 64, "stop": ["\n\n", "</s>"],
               "system_prompt": "Réponds brièvement ✓", "logit_bias": {"15043": -100},
               "nested": {"list": [1, 2.5, None, True, "x"], "empty": {}}}
    server = {"ctx_size": 4096, "parallel": 2, "extra_args": ["--flash-attn", "on"]}
    with db.begin() as conn:
        conn.execute(aliases.insert().values(
            name="rich", model="owner/repo:Q4_K_M", request_defaults=request,
            server_options=server, source="config"))
        conn.execute(aliases.insert().values(name="plain", model="other"))  # JSON defaults: {}

    db.dispose()  # nothing cached in the engine: read it back fresh
    with db.read() as conn:
        rich = conn.execute(select(aliases).where(aliases.c.name == "rich")).one()
        plain = conn.execute(select(aliases).where(aliases.c.name == "plain")).one()
    assert rich.request_defaults == request
    assert rich.server_options == server
    assert isinstance(rich.request_defaults["nested"]["list"][1], float)
    assert rich.source == "config" and rich.model == "owner/repo:Q4_K_M"
    assert rich.created_at is not None and rich.updated_at is not None
    assert (plain.request_defaults, plain.server_options, plain.source) == ({}, {}, "api")


def test_alias_names_are_unique(db):
    db.upgrade()
    with db.begin() as conn:
        conn.execute(aliases.insert().values(name="dup", model="a"))
    with pytest.raises(IntegrityError), db.begin() as conn:
        conn.execute(aliases.insert().values(name="dup", model="b"))
    with db.read() as conn:
        assert conn.scalars(select(aliases.c.model)).all() == ["a"]


# -- SQLite backups ------------------------------------------------------------------------

def upgrade_to(db: Database, revision: str) -> None:
    """Bring a database to an older revision, as an earlier release left it."""
    cfg = db._alembic_config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def test_sqlite_behind_head_is_backed_up_before_upgrading(tmp_path, monkeypatch):
    path = tmp_path / "data" / "bodhi.sqlite"
    old = Database(url=f"sqlite:///{path}")
    old.connect()
    upgrade_to(old, "0001")  # the first release's schema
    with old.begin() as conn:
        conn.execute(aliases.insert().values(name="mine", model="owner/repo:Q8_0",
                                             request_defaults={"temperature": 0.5},
                                             source="api"))
    old.dispose()

    db = Database(url=f"sqlite:///{path}")
    try:
        db.connect()
        assert db.current_revision() == "0001" != db.head_revision()
        backup = db.upgrade()
        assert db.current_revision() == db.head_revision()
        assert "api_tokens" in inspect(db.engine).get_table_names()
    finally:
        db.dispose()

    assert backup is not None and backup.exists()
    assert backup.parent == path.parent
    assert backup.name.startswith("bodhi.sqlite.") and backup.name.endswith(".bak")
    with sqlite3.connect(backup) as conn:  # the database as it was before the upgrade
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
        assert conn.execute("SELECT name, model, request_defaults, source FROM model_aliases"
                            ).fetchall() == [("mine", "owner/repo:Q8_0",
                                              '{"temperature": 0.5}', "api")]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "api_tokens" not in tables
    with sqlite3.connect(path) as conn:  # and the upgraded one kept the data too
        assert conn.execute("SELECT name, model FROM model_aliases").fetchall() == [
            ("mine", "owner/repo:Q8_0")]


def test_the_backup_holds_what_is_still_in_the_write_ahead_log(tmp_path):
    """A row committed but not yet checkpointed lives in ``bodhi.sqlite-wal``; a copy of
    the main file alone would lose it."""
    path = tmp_path / "bodhi.sqlite"
    old = Database(url=f"sqlite:///{path}")
    old.connect()
    upgrade_to(old, "0001")
    old.dispose()
    holder = sqlite3.connect(path)  # an open reader keeps the log from being folded back
    holder.execute("PRAGMA wal_autocheckpoint=0")
    holder.execute("INSERT INTO model_aliases (name, model, request_defaults, "
                   "server_options, source, created_at, updated_at) VALUES ('late', 'x', "
                   "'{}', '{}', 'api', '2026-01-01', '2026-01-01')")
    holder.commit()
    assert (tmp_path / "bodhi.sqlite-wal").stat().st_size > 0
    db = Database(url=f"sqlite:///{path}")
    try:
        backup = db.upgrade()
    finally:
        db.dispose()
        holder.close()
    with sqlite3.connect(backup) as conn:
        assert conn.execute("SELECT name FROM model_aliases").fetchall() == [("late",)]


def test_sqlite_keeps_a_write_ahead_log_unless_told_not_to(tmp_path):
    url = f"sqlite:///{tmp_path / 'b.sqlite'}"
    for wal, mode, synchronous in ((True, "wal", 1), (False, "delete", 2)):
        db = Database(url=url, sqlite_wal=wal)
        try:
            db.upgrade()
            with db.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == mode
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == synchronous
        finally:
            db.dispose()


def test_new_sqlite_file_gets_no_backup(tmp_path):
    path = tmp_path / "nested" / "dir" / "bodhi.sqlite"  # parents are created
    db = Database(url=f"sqlite:///{path}")
    try:
        assert db.upgrade() is None
    finally:
        db.dispose()
    assert path.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["bodhi.sqlite"]


def test_cheap_head_revision_agrees_with_alembic():
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from bodhi_jupyter.store.database import migrations_dir

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    assert Database().head_revision() == ScriptDirectory.from_config(cfg).get_current_head()


def test_head_revision_follows_the_chain_not_the_file_names(tmp_path):
    from bodhi_jupyter.store.database import head_revision_of

    (tmp_path / "b_first.py").write_text('revision = "aa"\ndown_revision = None\n')
    (tmp_path / "a_second.py").write_text('revision = "bb"\ndown_revision = "aa"\n')
    assert head_revision_of(tmp_path) == "bb"
    (tmp_path / "c_branch.py").write_text('revision = "cc"\ndown_revision = "aa"\n')
    with pytest.raises(RuntimeError, match="one head"):
        head_revision_of(tmp_path)


def test_an_up_to_date_database_opens_without_alembic(tmp_path):
    """Only a pending migration pays for importing Alembic (and takes a backup)."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'b.sqlite'}"
    Database(url=url).upgrade()
    code = ("import sys; from bodhi_jupyter.store.database import Database; "
            f"d = Database(url={url!r}); assert d.upgrade() is None; "
            "print('alembic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
    assert list(tmp_path.glob("*.bak")) == []
