"""Migrations keep data: from every earlier revision, on SQLite and PostgreSQL, a database
with rows in every table upgrades to head with every row and value intact; and head's schema
is exactly what the tables in store/tables.py describe.

The revisions come from Alembic's script directory, so a new migration is covered without
touching this file. The rows come from a generic filler that reads the schema as it was at
that revision (``MetaData.reflect``) and makes values from the column types: a migration
that adds a table or a column needs no fixture of its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Callable

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bodhi_jupyter.store import tables
from bodhi_jupyter.store.database import Database

#: values for columns a CHECK constraint restricts, which no generic filler can guess:
#: (table, column) -> function of the row number. Empty while no migration adds one.
CONSTRAINED: dict[tuple[str, str], Callable[[int], object]] = {}

BASE_TIME = datetime(2025, 3, 30, 1, 30, 15, 123456, tzinfo=timezone.utc)


def _script_directory():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(Database()._alembic_config())


def revisions_oldest_first() -> list[str]:
    """Every revision, base first (``walk_revisions`` goes from head down)."""
    return [script.revision for script in _script_directory().walk_revisions()][::-1]


EARLIER = revisions_oldest_first()[:-1]


def test_the_walk_is_the_whole_linear_chain():
    """What the tests below are parametrized over is every migration, in order."""
    script = _script_directory()
    chain = revisions_oldest_first()
    assert script.get_revision(chain[0]).down_revision is None
    for older, newer in zip(chain, chain[1:]):
        assert script.get_revision(newer).down_revision == older
    assert chain[-1] == Database().head_revision()
    assert len(EARLIER) == len(chain) - 1 >= 6  # 0001 ... 0007 at least


# -- the filler ---------------------------------------------------------------------------

def column_value(table: sa.Table, column: sa.Column, row: int):
    """A value of the column's type, different for every row (unique constraints hold) and
    awkward where it can be: non-ASCII text up to the column's length, nested JSON, big
    integers, timestamps with a time zone and microseconds."""
    if (table.name, column.name) in CONSTRAINED:
        return CONSTRAINED[(table.name, column.name)](row)
    kind, position = column.type, list(table.columns).index(column)
    if isinstance(kind, sa.Enum) and kind.enums:
        return kind.enums[row % len(kind.enums)]
    if isinstance(kind, sa.Boolean):
        return row % 2 == 0
    if isinstance(kind, sa.BigInteger):
        return 2**40 + 10 * row + position
    if isinstance(kind, sa.Integer):
        return 1000 + 10 * row + position
    if isinstance(kind, sa.Float):
        return 0.25 + row + position  # exact in binary: compared with ==
    if isinstance(kind, sa.Numeric):
        return Decimal("12.5") + row
    if isinstance(kind, sa.DateTime):
        return BASE_TIME + timedelta(days=row, minutes=position)
    if isinstance(kind, sa.Date):
        return (BASE_TIME + timedelta(days=row)).date()
    if isinstance(kind, sa.JSON):
        return {"column": column.name, "row": row, "list": [1, 2.5, None, True, "ünï ✓"],
                "nested": {"empty": {}, "none": None}}
    if isinstance(kind, sa.LargeBinary):
        return bytes([row, 0, 255]) + column.name.encode()
    if isinstance(kind, sa.String):  # VARCHAR, TEXT and the dialects' own
        text = f"{row}:{column.name} — ünï ✓"
        if isinstance(kind, sa.Text):
            text += "\nsecond line\t'quoted' \"twice\""
        return text[:kind.length] if kind.length else text
    raise TypeError(f"the migration test's filler has no value for {table.name}.{column.name} "
                    f"of type {kind!r}: teach column_value() this type")


def _autoincrement(table: sa.Table, column: sa.Column) -> bool:
    """A single integer primary key: the database numbers the rows (sequence, rowid)."""
    return (column.primary_key and len(table.primary_key.columns) == 1
            and isinstance(column.type, sa.Integer))


def fill(conn: sa.Connection, metadata: sa.MetaData, row: int, full: bool,
         written: dict[str, list[dict]]) -> None:
    """Insert one row in every table, parents before children. A full row has a value in
    every column; a minimal one only where NOT NULL requires it (the rest is NULL or the
    server default). Foreign keys point at the parent's row of the same number."""
    for table in metadata.sorted_tables:
        values = {}
        for column in table.columns:
            if _autoincrement(table, column):
                continue
            required = not column.nullable and column.server_default is None
            if not (full or required or column.primary_key):
                continue
            if column.foreign_keys:
                target = next(iter(column.foreign_keys)).column
                parents = written.get(target.table.name) or []
                if not parents:
                    assert column.nullable, f"no parent row for {table.name}.{column.name}"
                    continue
                values[column.name] = parents[row % len(parents)][target.name]
            else:
                values[column.name] = column_value(table, column, row)
        result = conn.execute(table.insert().values(values))
        for column, key in zip(table.primary_key.columns, result.inserted_primary_key):
            values[column.name] = key
        written.setdefault(table.name, []).append(values)


# -- reading back -------------------------------------------------------------------------

def normalized(value):
    """The same instant whether the backend gives it back aware (PostgreSQL, in the
    session's time zone) or naive (SQLite stores UTC wall-clock text)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None \
            else value.astimezone(timezone.utc)
    return value


def reflect(conn: sa.Connection) -> sa.MetaData:
    metadata = sa.MetaData()
    metadata.reflect(conn, only=lambda name, _meta: name != "alembic_version")
    return metadata


def read_all(conn: sa.Connection, metadata: sa.MetaData) -> dict[str, dict[tuple, dict]]:
    """Every row of every table, keyed by table and primary key."""
    rows = {}
    for table in metadata.sorted_tables:
        pk = [c.name for c in table.primary_key.columns]
        assert pk, f"{table.name} has no primary key"
        rows[table.name] = {}
        for record in conn.execute(sa.select(table)).mappings():
            values = {k: normalized(v) for k, v in record.items()}
            rows[table.name][tuple(values[c] for c in pk)] = values
    return rows


def added_default(table: str, column: str):
    """What a new NOT NULL column should hold in rows written before it existed: the model's
    own default where that is a constant (so old rows read like new ones), else anything
    but NULL."""
    model_column = tables.metadata.tables[table].columns.get(column)
    default = model_column.default if model_column is not None else None
    if default is not None and default.is_scalar:
        return default.arg
    return AnyNotNull()


class AnyNotNull:
    def __eq__(self, other):
        return other is not None

    def __repr__(self):
        return "<any value but NULL>"


def upgrade_to(db: Database, revision: str) -> None:
    """The database as a release at ``revision`` left it."""
    cfg = db._alembic_config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


@pytest.fixture
def db(db_url):
    """PostgreSQL sessions in a time zone that is not UTC: a timestamp column that lost its
    time zone in a migration would then read back hours off."""
    if db_url.startswith("postgresql"):
        db_url += "?options=-c%20timezone%3DAsia/Kolkata"
    database = Database(url=db_url)
    database.connect()
    yield database
    database.dispose()


# -- the tests ----------------------------------------------------------------------------

@pytest.mark.parametrize("revision", EARLIER)
def test_upgrade_to_head_keeps_every_row(db, revision):
    upgrade_to(db, revision)
    assert db.current_revision() == revision
    written: dict[str, list[dict]] = {}
    with db.engine.begin() as conn:
        old_schema = reflect(conn)
        assert old_schema.tables, f"no tables at {revision}"
        fill(conn, old_schema, 0, True, written)
        fill(conn, old_schema, 1, False, written)
    with db.engine.connect() as conn:
        before = read_all(conn, old_schema)
    for table, rows in written.items():  # the filler wrote what it meant to
        assert len(before[table]) == len(rows) == 2, table
        pk = [c.name for c in old_schema.tables[table].primary_key.columns]
        for values in rows:
            stored = before[table][tuple(values[c] for c in pk)]
            assert {k: stored[k] for k in values} == {k: normalized(v)
                                                      for k, v in values.items()}, table

    db.upgrade()  # what the extension runs at start

    assert db.current_revision() == db.head_revision()
    with db.engine.connect() as conn:
        new_schema = reflect(conn)
        after = read_all(conn, new_schema)
        if db.engine.dialect.name == "sqlite":  # batch migrations copy tables on SQLite
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    for table, rows in before.items():
        assert table in after, f"{table} (present at {revision}) is gone at head"
        assert after[table].keys() == rows.keys(), f"{table}: rows lost or added"
        kept = [c.name for c in old_schema.tables[table].columns
                if c.name in new_schema.tables[table].columns]
        added = [c for c in new_schema.tables[table].columns
                 if c.name not in old_schema.tables[table].columns]
        for key, old in rows.items():
            new = after[table][key]
            assert {c: new[c] for c in kept} == {c: old[c] for c in kept}, (table, key)
            for column in added:
                if not column.nullable:
                    assert new[column.name] == added_default(table, column.name), \
                        f"{table}.{column.name}: what carried-over row {key} got"

    with db.read() as conn:  # the tables read what the upgrade left, and can add to it
        for table in tables.metadata.sorted_tables:
            assert len(conn.execute(sa.select(table)).all()) == len(after[table.name])
    with db.engine.begin() as conn:  # sequences and autoincrement carry on past the old ids
        fill(conn, new_schema, 2, True, {})


def test_head_schema_matches_the_tables(db):
    db.upgrade()
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True})
        differences = compare_metadata(context, tables.metadata)
    assert differences == [], "head's schema differs from the tables:\n" + "\n".join(
        describe(d) for d in differences)


def describe(difference) -> str:
    """One line per difference: an operation, what it applies to, and both sides."""
    if isinstance(difference, list):  # alembic groups the modify_* of one column
        return "\n".join(describe(d) for d in difference)
    operation, *rest = difference
    if operation.startswith("modify_"):
        _schema, table, column, _existing, in_database, in_models = rest
        return (f"{operation} {table}.{column}: database {_show(in_database)}, "
                f"models {_show(in_models)}")
    return f"{operation} {_show(rest[-1])}"


def _show(thing) -> str:
    if isinstance(thing, sa.Table):
        return f"table {thing.name}"
    if isinstance(thing, sa.Column):
        null = "NULL" if thing.nullable else "NOT NULL"
        return f"column {thing.table.name}.{thing.name} {thing.type} {null}"
    if isinstance(thing, (sa.Index, sa.Constraint)):
        columns = ", ".join(c.name for c in thing.columns)
        return f"{type(thing).__name__} {thing.name} on {thing.table.name}({columns})"
    if isinstance(thing, sa.DefaultClause):
        return f"server_default {getattr(thing.arg, 'text', thing.arg)!r}"
    return repr(thing)


def test_a_sqlite_table_rebuild_keeps_the_rows_that_reference_it(tmp_path, monkeypatch):
    """A batch migration rebuilds a SQLite table; rebuilding a parent must not delete its
    children through ON DELETE CASCADE (foreign keys are off while migrating), and foreign
    keys are enforced again afterwards."""
    import shutil

    from bodhi_jupyter.store import database as database_module

    parents = sorted({fk.column.table.name for table in tables.metadata.tables.values()
                      for fk in table.foreign_keys if fk.ondelete == "CASCADE"})
    assert parents, "no ON DELETE CASCADE left: this test has nothing to rebuild"
    head = Database().head_revision()
    migrations = tmp_path / "migrations"
    shutil.copytree(database_module.migrations_dir(), migrations,
                    ignore=shutil.ignore_patterns("__pycache__"))
    rebuilds = "".join(
        f"    with op.batch_alter_table({name!r}, recreate='always') as batch:\n"
        f"        batch.add_column(sa.Column('rebuilt', sa.Integer()))\n" for name in parents)
    (migrations / "versions" / "9999_rebuild_parents.py").write_text(
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f"revision = '9999'\ndown_revision = {head!r}\n\n\ndef upgrade():\n{rebuilds}")

    db = Database(url=f"sqlite:///{tmp_path / 'bodhi.sqlite'}")
    try:
        db.upgrade()  # to today's head, from the real migrations
        written: dict[str, list[dict]] = {}
        with db.engine.begin() as conn:
            schema = reflect(conn)
            fill(conn, schema, 0, True, written)
            fill(conn, schema, 1, False, written)
            before = read_all(conn, schema)

        monkeypatch.setattr(database_module, "migrations_dir", lambda: migrations)
        db.upgrade()

        assert db.current_revision() == "9999"
        with db.engine.connect() as conn:
            after = read_all(conn, reflect(conn))
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
        for table, rows in before.items():
            assert after[table].keys() == rows.keys(), f"{table}: rows lost"
        child = next(t for t in schema.sorted_tables
                     if any(fk.ondelete == "CASCADE" for fk in t.foreign_keys))
        fk = next(fk for fk in child.foreign_keys if fk.ondelete == "CASCADE")
        with db.engine.begin() as conn:  # enforced again: deleting a parent cascades
            conn.execute(fk.column.table.delete())
            assert conn.execute(sa.select(sa.func.count()).select_from(child)).scalar() == 0
    finally:
        db.dispose()
