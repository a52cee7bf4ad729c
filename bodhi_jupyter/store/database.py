"""Database connection and the migration runner.

The schema is created and changed only by Alembic; an existing SQLite file is copied aside
before it is upgraded, so a failed migration never costs the user their data.

Start-up cost: SQLAlchemy is imported when the database is first opened (the app does that
in a background thread once the server is up), and Alembic only when a migration is
pending: the head revision is read from the migration files' ``revision``/``down_revision``
lines and compared with the database's ``alembic_version`` row.
"""

from __future__ import annotations

import ast
import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from jupyter_core.paths import jupyter_data_dir
from traitlets import Bool, Unicode, default
from traitlets.config import LoggingConfigurable

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from alembic.config import Config as AlembicConfig
    from sqlalchemy.engine import Connection, Engine


#: what every SQLite connection is set up with, by ``Database.sqlite_wal``
_SQLITE_PRAGMAS = {
    True: ("PRAGMA foreign_keys=ON", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"),
    False: ("PRAGMA foreign_keys=ON", "PRAGMA journal_mode=DELETE", "PRAGMA synchronous=FULL"),
}


def migrations_dir() -> Path:
    """Installed wheels carry the migrations inside the package; a source checkout has them
    at the top of the repository."""
    packaged = Path(__file__).resolve().parent.parent / "migrations"
    if (packaged / "env.py").exists():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


def head_revision_of(versions: Path) -> str:
    """The head of the migration chain, from each file's module-level ``revision`` and
    ``down_revision`` assignments (parsed, not imported: no Alembic needed)."""
    revisions, parents = set(), set()
    for path in versions.glob("*.py"):
        found = {}
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id in ("revision", "down_revision")):
                found[node.targets[0].id] = ast.literal_eval(node.value)
        if "revision" not in found:
            continue
        revisions.add(found["revision"])
        down = found.get("down_revision")
        parents.update(down if isinstance(down, (tuple, list)) else [down] if down else [])
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"expected one head revision in {versions}, found {sorted(heads)}")
    return heads.pop()


class Database(LoggingConfigurable):
    """Owns the SQLAlchemy engine and brings the schema up to date on start."""

    url = Unicode(
        help="SQLAlchemy URL of the bodhi database. Default: a SQLite file in the Jupyter "
        "data directory. Use a PostgreSQL URL for shared JupyterHub deployments.",
    ).tag(config=True)

    sqlite_wal = Bool(
        True,
        help="Use SQLite's write-ahead log with synchronous=NORMAL: a commit appends to the "
        "log without an fsync (a few times less CPU than the rollback journal's commit: "
        "bench/sqlite_commits.py). A committed record survives the server being killed; a "
        "power cut or an operating-system crash may lose the last commits, never the file. "
        "Turn it off for a data directory on a network filesystem (NFS), where SQLite "
        "cannot share the log's index between processes.",
    ).tag(config=True)

    @default("url")
    def _default_url(self):
        path = Path(jupyter_data_dir()) / "bodhi" / "bodhi.sqlite"
        return f"sqlite:///{path}"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.engine: Engine | None = None

    def connect(self) -> None:
        from sqlalchemy import create_engine, event
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(url)
        if url.get_backend_name() == "sqlite":
            statements = _SQLITE_PRAGMAS[self.sqlite_wal]

            def pragmas(dbapi_conn, _record):
                cur = dbapi_conn.cursor()
                for statement in statements:
                    cur.execute(statement)
                cur.close()

            event.listen(self.engine, "connect", pragmas)

    def begin(self) -> AbstractContextManager[Connection]:
        """A connection in a transaction: committed when the block ends, rolled back if it
        raises. The stores write statements on it (``store/tables.py``)."""
        assert self.engine is not None, "Database.connect() was not called"
        return self.engine.begin()

    def read(self) -> AbstractContextManager[Connection]:
        """A connection for queries; what it began is rolled back when the block ends."""
        assert self.engine is not None, "Database.connect() was not called"
        return self.engine.connect()

    def _alembic_config(self) -> AlembicConfig:
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(migrations_dir()))
        return cfg

    def current_revision(self) -> str | None:
        """The revision the database is at (None: no schema yet)."""
        from sqlalchemy import inspect, text

        with self.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def head_revision(self) -> str:
        return head_revision_of(migrations_dir() / "versions")

    def upgrade(self) -> Path | None:
        """Apply pending migrations; returns the path of the SQLite backup if one was made."""
        if self.engine is None:
            self.connect()
        current, head = self.current_revision(), self.head_revision()
        if current == head:
            return None
        from alembic import command

        backup = self._backup_sqlite() if current is not None or self._has_tables() else None
        cfg = self._alembic_config()
        sqlite = self.engine.dialect.name == "sqlite"
        with self.engine.connect() as conn:
            if sqlite:
                # A batch migration rebuilds a SQLite table (copy, drop, rename); with foreign
                # keys on, dropping a parent deletes its ON DELETE CASCADE children. The pragma
                # does nothing inside a transaction, so it is set before one starts.
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                conn.commit()
            try:
                with conn.begin():
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
            finally:
                if sqlite:
                    conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                    conn.commit()
        self.log.info("bodhi database upgraded %s -> %s (%s)", current, head, self.engine.url)
        return backup

    def _has_tables(self) -> bool:
        from sqlalchemy import inspect

        with self.engine.connect() as conn:
            return bool(inspect(conn).get_table_names())

    def _backup_sqlite(self) -> Path | None:
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        src = Path(url.database)
        if not src.exists() or src.stat().st_size == 0:
            return None  # a brand-new database has nothing to lose
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        dest = src.with_name(f"{src.name}.{stamp}.bak")
        # SQLite's online backup, not a file copy: what is still in the write-ahead log
        # belongs to the database too
        with closing(sqlite3.connect(src)) as source, closing(sqlite3.connect(dest)) as copy:
            source.backup(copy)
        self.log.info("backed up %s to %s before migrating", src, dest)
        return dest

    def dispose(self) -> None:
        if self.engine is not None:
            self.engine.dispose()

