"""A throw-away PostgreSQL cluster for tests, and a ``db_url`` fixture parametrized over
SQLite and PostgreSQL.

One cluster per test session (initdb + pg_ctl on a random loopback port, fsync off), one
fresh database per test (createdb). Root cannot run the server, so as root every command
runs as the ``postgres`` user in a short temp dir that user owns. Needs the Debian package
``postgresql`` and the ``psycopg[binary]`` driver: outside CI a missing piece skips the
PostgreSQL cases; in CI (``CI=true``) it fails them, so a broken setup cannot pass silently.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI") == "true"
INSTALL_HINT = "apt-get install -y postgresql && pip install 'psycopg[binary]>=3.1'"


def _missing(reason: str):
    if IN_CI:
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason} ({INSTALL_HINT})",
                    pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason} ({INSTALL_HINT})")


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresCluster:
    bindir: Path
    root: Path
    port: int
    as_user: list[str]
    _counter = itertools.count(1)

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, str(self.bindir / tool), *args],
                              capture_output=True, text=True, check=check, timeout=60)

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL (psycopg 3 driver)."""
        name = f"test_{os.getpid()}_{next(self._counter)}"
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres_cluster():
    bindir = _pg_bindir()
    if bindir is None:
        _missing("initdb not found (/usr/lib/postgresql/*/bin/initdb)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("the psycopg driver is not installed")

    as_root = os.geteuid() == 0
    as_user = ["runuser", "-u", "postgres", "--"] if as_root else []
    # short: the server's Unix socket path must stay under 107 bytes
    root = Path(tempfile.mkdtemp(prefix="bpg-", dir="/tmp"))
    if as_root:
        shutil.chown(root, "postgres", "postgres")
    cluster = None
    try:
        init = subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(root / "data"),
                               "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
                              capture_output=True, text=True, timeout=120)
        if init.returncode:
            pytest.fail(f"initdb failed:\n{init.stdout}\n{init.stderr}", pytrace=False)
        for _attempt in range(3):  # the random port may be taken between pick and bind
            port = _free_port()
            start = subprocess.run(
                [*as_user, str(bindir / "pg_ctl"), "-D", str(root / "data"), "-w",
                 "-t", "60", "-l", str(root / "server.log"),
                 "-o", f"-k {root} -h 127.0.0.1 -p {port} -c fsync=off", "start"],
                capture_output=True, text=True, timeout=90)
            if start.returncode == 0:
                cluster = PostgresCluster(bindir, root, port, as_user)
                break
        else:
            log = (root / "server.log").read_text(errors="replace") \
                if (root / "server.log").exists() else ""
            pytest.fail(f"pg_ctl start failed:\n{start.stdout}\n{start.stderr}\n{log}",
                        pytrace=False)
        yield cluster
    finally:
        if cluster is not None:
            subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(root / "data"),
                            "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A URL of an empty database: a SQLite file in tmp_path, or a fresh PostgreSQL
    database in the session's cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bodhi.sqlite'}"
    return request.getfixturevalue("postgres_cluster").create_database()
