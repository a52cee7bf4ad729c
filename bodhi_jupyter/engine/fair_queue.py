"""Fair admission to one engine: at most its slots in flight, and the next free slot goes to
the waiting user who holds the fewest slots (ties: the one served longest ago), FIFO within
a user. Without it llama-server queues excess requests first come, first served, so one
user's 32 streams make everyone else wait for all of them."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque


class Abandoned(Exception):
    """The caller went away while waiting for a slot (its place was given up)."""


class FairGate:
    """Counts slots held per user and hands freed ones out fairly; a plain asyncio object.

    ``slots`` <= 0 means no limit (the engine chooses its own slot count). A waiter that
    is cancelled, times out or is abandoned leaves the queue; one that was granted a slot
    in the same moment passes it on, so no slot is ever lost."""

    def __init__(self, slots: int):
        self.slots = slots
        self.in_flight = 0
        self.held: dict[str, int] = {}
        self._waiters: dict[str, deque[asyncio.Future]] = {}
        self._served: dict[str, int] = {}  # user -> sequence number of their last grant
        self._seq = itertools.count(1)

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiters.values())

    def waiting_for(self, user: str) -> int:
        return len(self._waiters.get(user, ()))

    @property
    def idle(self) -> bool:
        return self.in_flight == 0 and not self._waiters

    def _has_room(self) -> bool:
        return self.slots <= 0 or self.in_flight < self.slots

    async def acquire(self, user: str, timeout: float | None = None,
                      gone: asyncio.Event | None = None) -> None:
        """Wait for a slot. Raises ``asyncio.TimeoutError`` after ``timeout`` seconds and
        ``Abandoned`` once ``gone`` is set; either way nothing is held."""
        if self._has_room() and not self._waiters:
            self._grant(user)
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(user, deque()).append(fut)
        gone_wait = asyncio.ensure_future(gone.wait()) if gone is not None else None
        try:
            waits = {fut} if gone_wait is None else {fut, gone_wait}
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._give_up(user, fut)
            raise
        finally:
            if gone_wait is not None:
                gone_wait.cancel()
        if fut.done() and not fut.cancelled():
            return  # granted: the slot was counted for us in _admit
        self._give_up(user, fut)
        if gone is not None and gone.is_set():
            raise Abandoned()
        raise asyncio.TimeoutError()

    def release(self, user: str) -> None:
        """Give a slot back and admit whoever is next."""
        self.in_flight = max(0, self.in_flight - 1)
        left = self.held.get(user, 0) - 1
        if left > 0:
            self.held[user] = left
        else:
            self.held.pop(user, None)
        self._admit()

    def _grant(self, user: str) -> None:
        self.in_flight += 1
        self.held[user] = self.held.get(user, 0) + 1
        self._served[user] = next(self._seq)

    def _give_up(self, user: str, fut: asyncio.Future) -> None:
        """Leave the queue; a slot granted meanwhile goes to the next in line."""
        if fut.done() and not fut.cancelled():
            self.release(user)
            return
        fut.cancel()
        queue = self._waiters.get(user)
        if queue is not None:
            try:
                queue.remove(fut)
            except ValueError:
                pass
            if not queue:
                del self._waiters[user]
        self._admit()  # a smaller queue may let someone else in (slots changed meanwhile)

    def next_user(self) -> str | None:
        """Who gets the next free slot: fewest slots held, then least recently served."""
        if not self._waiters:
            return None
        return min(self._waiters, key=lambda u: (self.held.get(u, 0), self._served.get(u, 0)))

    def _admit(self) -> None:
        while self._waiters and self._has_room():
            user = self.next_user()
            queue = self._waiters[user]
            fut = queue.popleft()
            if not queue:
                del self._waiters[user]
            if fut.done():  # cancelled meanwhile: never counted
                continue
            self._grant(user)
            fut.set_result(None)
        if not self._waiters:
            # forget who was served when: only relative order among waiters matters
            self._served = {u: s for u, s in self._served.items() if u in self.held}
