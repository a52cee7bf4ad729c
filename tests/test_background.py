"""Tasks nobody awaits are kept until they end and their failures are logged."""

from __future__ import annotations

import asyncio
import gc
import logging

from bodhi_jupyter.background import BackgroundTasks


async def test_failure_is_logged_and_the_task_forgotten(caplog):
    tasks = BackgroundTasks(logging.getLogger("test"))

    async def boom():
        raise ValueError("went wrong")

    task = tasks.spawn(boom(), "boom")
    del task
    gc.collect()  # only the set holds it now
    while len(tasks):
        await asyncio.sleep(0)
    assert "background task boom failed" in caplog.text and "went wrong" in caplog.text


async def test_cancel_all_ends_what_runs():
    tasks = BackgroundTasks(logging.getLogger("test"))
    started = asyncio.Event()

    async def forever():
        started.set()
        await asyncio.Event().wait()

    task = tasks.spawn(forever(), "forever")
    await started.wait()
    await tasks.cancel_all()
    assert task.cancelled() and len(tasks) == 0
