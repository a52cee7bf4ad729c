"""Tasks that nobody awaits (idle unloads, preloads, exit watchers) still need an owner:
one that keeps them referenced until they end, logs how they failed, and can cancel what is
left at shutdown. Without it their exceptions vanish and the event loop may drop them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine


def log_failure(task: asyncio.Task, log: logging.Logger) -> None:
    """Done-callback: log the exception a finished task ended with."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("bodhi: background task %s failed: %r", task.get_name(), exc, exc_info=exc)


class BackgroundTasks:
    """A set of running tasks, each removed (and its failure logged) when it ends."""

    def __init__(self, log: logging.Logger):
        self.log = log
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        log_failure(task, self.log)

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel_all(self) -> None:
        """Cancel what is still running and wait for it to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
