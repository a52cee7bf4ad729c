"""Worker threads that relay event streams with blocking socket calls.

On a virtual machine a relay woken by the event loop pays for ``epoll_wait``, the loop's
turn and its callbacks before it can ``recv``; a thread parked in ``recv`` on the engine's
socket pays only for the ``recv`` and the ``send``. ``bench/relay_floor.py`` prints both
per chunk. Threads are kept parked between streams (starting one costs more than a
stream's first chunk may wait), and are daemons: one blocked on a socket must never hold
up the interpreter's exit, which :class:`concurrent.futures.ThreadPoolExecutor` would (it
joins its workers at exit, and it queues jobs once ``max_workers`` are busy, where every
stream needs its own thread at once).
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Callable

#: a worker parked this long with nothing to relay ends
IDLE_S = 300.0
#: streams relayed by threads at once; past this the event loop relays the rest: with many
#: streams the engine's tokens come in bursts, one per stream, and the loop takes a burst
#: in one wake-up where threads take turns at the GIL
MAX_ACTIVE = max(2, os.cpu_count() or 2)


class RelayThreads:
    """Runs each job on a thread of its own, reusing parked ones."""

    def __init__(self, idle_s: float = IDLE_S, max_active: int = MAX_ACTIVE):
        self.idle_s, self.max_active = idle_s, max_active
        self._lock = threading.Lock()
        self._parked: list[queue.SimpleQueue] = []
        self._started = 0
        self._active = 0

    @property
    def has_room(self) -> bool:
        """Whether one more job may have a thread now (fewer than ``max_active`` run)."""
        return self._active < self.max_active

    @property
    def parked(self) -> int:
        return len(self._parked)

    @property
    def started(self) -> int:
        """How many threads were ever started (for tests: parked ones are reused)."""
        return self._started

    def reserve(self) -> None:
        """Hold a place for a job that starts later (``run(job, reserved=True)``), or
        give it back with ``release()``."""
        with self._lock:
            self._active += 1

    def release(self) -> None:
        with self._lock:
            self._active -= 1

    def run(self, job: Callable[[], None], reserved: bool = False) -> None:
        """Start ``job`` now on a parked thread, or a new one (in the place ``reserve()``
        held, if ``reserved``). ``job`` must not raise."""
        with self._lock:
            if not reserved:
                self._active += 1
            inbox = self._parked.pop() if self._parked else None
            if inbox is None:
                self._started += 1
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._work, args=(inbox,), name="bodhi-relay",
                             daemon=True).start()
        inbox.put(job)

    def _work(self, inbox: queue.SimpleQueue) -> None:
        while True:
            try:
                job = inbox.get(timeout=self.idle_s)
            except queue.Empty:
                with self._lock:
                    if inbox in self._parked:  # else a job is on its way: take it
                        self._parked.remove(inbox)
                        return
                continue
            job()
            with self._lock:
                self._active -= 1
                self._parked.append(inbox)


def call_on_loop(loop: asyncio.AbstractEventLoop, callback: Callable, *args) -> None:
    """From a relay thread: run ``callback(*args)`` on ``loop`` soon, unless the loop has
    closed (the server is stopping, and nobody is left to tell)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        pass


#: the process's relay threads
relay_threads = RelayThreads()
