#!/usr/bin/env python3
"""What committing one usage record costs the server on SQLite: the usage writer's own
write (``UsageRecorder._write``, one record per commit, as a quiet server commits them)
with the write-ahead log (``Database.sqlite_wal``, the default) and with the rollback
journal, in one run.

    python bench/sqlite_commits.py [--commits N]

CPU time is the process's (``time.process_time``: the commit's fsync waits are not CPU);
wall time is what the writer thread spends per commit. The databases live in a temporary
directory on the same filesystem as the Jupyter data directory would (``TMPDIR``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bodhi_jupyter.store.database import Database  # noqa: E402
from bodhi_jupyter.usage import UsageEntry, UsageRecorder  # noqa: E402


def per_commit(wal: bool, commits: int, tmp: Path) -> tuple[float, float]:
    """(CPU ms, wall ms) per commit of one usage record."""
    db = Database(url=f"sqlite:///{tmp / ('wal' if wal else 'journal')}.sqlite",
                  sqlite_wal=wal)
    db.upgrade()
    writer = UsageRecorder(db)
    writer.close()  # no thread: the batches are written right here, one per commit
    entry = UsageEntry(user="bench", token_id=None, model="smollm2-135m-instruct",
                       endpoint="chat", stream=True, status=200, duration_ms=12.5,
                       prompt_tokens=30, completion_tokens=96)
    try:
        for _ in range(20):  # warm-up: connection pool, compiled statement
            writer._write([entry])
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(commits):
            writer._write([entry])
        return ((time.process_time() - cpu0) * 1e3 / commits,
                (time.perf_counter() - wall0) * 1e3 / commits)
    finally:
        db.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {wal: per_commit(wal, args.commits, Path(tmp)) for wal in (True, False)}
    print(f"SQLite: one usage record per commit, {args.commits} commits each")
    print(f"    {'journal':<40} {'CPU ms/commit':>14} {'wall ms/commit':>15}")
    for wal, label in ((True, "write-ahead log, synchronous=NORMAL"),
                       (False, "rollback journal, synchronous=FULL")):
        cpu, wall = results[wal]
        print(f"    {label:<40} {cpu:>14.3f} {wall:>15.3f}")
    print(f"    CPU ratio journal/WAL: {results[False][0] / results[True][0]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
