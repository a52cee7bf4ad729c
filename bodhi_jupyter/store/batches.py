"""A writer that commits records from one background thread, in batches.

The request path only puts a record on a queue; the writer thread commits it within
``linger`` seconds (20 ms), together with whatever queued up meanwhile. ``flush()`` waits
until everything queued before it is in the database. Usage records and the audit log share
this machinery; each subclass says how a batch is written.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # SQLAlchemy loads when something is first written
    from .database import Database


class BatchWriter:
    """Queues records and writes them from one background thread.

    A record is committed within ``linger`` seconds, so a server killed right after a reply
    loses none. The writer waits that long after the first record for others to join it,
    and what queues up during a write goes in the next one: even with SQLite's write-ahead
    log a commit costs more than queueing (bench/sqlite_commits.py), and busy servers share
    one among many requests.
    """

    #: the writer thread's name (seen in stack dumps and tests)
    thread_name = "bodhi-writer"

    def __init__(self, database: Database, log=None, linger: float = 0.02,
                 max_batch: int = 500):
        self.database = database
        self.log = log
        self.linger = linger
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def _put(self, record) -> None:
        """Cheap enough for the request path: no I/O here. Dropped once closed."""
        if not self._closed:
            self._queue.put(record)

    async def flush(self) -> None:
        """Wait until every record queued so far is written."""
        if self._closed or not self._thread.is_alive():
            return  # nothing will be written any more
        marker: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put(marker)
        await asyncio.wrap_future(marker)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and stop the writer (server shutdown)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)

    def _write(self, batch: list) -> None:
        """Commit one batch of records; never raises (bookkeeping must not stop a server)."""
        raise NotImplementedError

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]  # wait for work, then for company, briefly
            if not _urgent(items[0]) and self.linger > 0:
                time.sleep(self.linger)  # one sleep, not a wake-up per arriving record
            while len(items) < self.max_batch:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            batch = [i for i in items if not _urgent(i)]
            if batch:
                self._write(batch)
            for item in items:
                if isinstance(item, concurrent.futures.Future):
                    item.set_result(None)
            if any(item is None for item in items):
                return


def _urgent(item) -> bool:
    """A flush marker or the stop signal: write now."""
    return item is None or isinstance(item, concurrent.futures.Future)
