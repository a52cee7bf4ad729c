"""The fair admission gate on its own: slots, the order of admission, and what leaving the
queue does (no HTTP, no engine)."""

from __future__ import annotations

import asyncio

import pytest

from bodhi_jupyter.engine.fair_queue import Abandoned, FairGate


async def settle():
    """Let granted waiters resume (a few loop turns)."""
    for _ in range(5):
        await asyncio.sleep(0)


def start(gate: FairGate, user: str, order: list, **kwargs) -> asyncio.Task:
    async def run():
        await gate.acquire(user, **kwargs)
        order.append(user)
    return asyncio.ensure_future(run())


async def test_at_most_slots_in_flight():
    gate, order = FairGate(2), []
    tasks = [start(gate, "a", order) for _ in range(5)]
    await settle()
    assert gate.in_flight == 2 and len(order) == 2 and gate.waiting == 3
    gate.release("a")
    await settle()
    assert gate.in_flight == 2 and len(order) == 3 and gate.waiting == 2
    for _ in range(4):
        gate.release("a")
        await settle()
    assert all(t.done() for t in tasks) and gate.in_flight == 0 and gate.idle


async def test_round_robin_across_users_fifo_within_one():
    gate, order = FairGate(1), []
    await gate.acquire("a")  # a holds the only slot
    # a queues four more, then b two, then c one
    for who in ["a1", "a2", "a3", "a4"]:
        start(gate, "a", order).set_name(who)
    b = [start(gate, "b", order) for _ in range(2)]
    c = start(gate, "c", order)
    await settle()
    holder = "a"
    admitted = []
    while gate.in_flight:
        gate.release(holder)
        await settle()
        if order:
            holder = order[-1]
            admitted.append(holder)
            order.clear()
    # b and c come in before a's second request, then the users take turns
    assert admitted == ["b", "c", "a", "b", "a", "a", "a"]
    assert all(t.done() for t in b) and c.done()


async def test_a_newcomer_gets_the_next_free_slot_under_load():
    gate, order = FairGate(4), []
    for _ in range(4):
        await gate.acquire("a")
    queued = [start(gate, "a", order) for _ in range(28)]
    start(gate, "b", order)
    await settle()
    assert gate.waiting == 29 and gate.next_user() == "b"
    gate.release("a")
    await settle()
    assert order == ["b"] and gate.held == {"a": 3, "b": 1}
    for task in queued:
        task.cancel()
    await settle()
    assert gate.waiting == 0 and gate.held == {"a": 3, "b": 1}


async def test_one_user_alone_uses_every_slot():
    gate = FairGate(3)
    for _ in range(3):
        await gate.acquire("a")
    assert gate.held == {"a": 3}


async def test_cancelled_waiter_frees_its_place():
    gate, order = FairGate(1), []
    await gate.acquire("a")
    leaving = start(gate, "b", order)
    staying = start(gate, "c", order)
    await settle()
    leaving.cancel()
    await settle()
    assert gate.waiting == 1 and gate.waiting_for("b") == 0
    gate.release("a")
    await settle()
    assert order == ["c"] and staying.done() and gate.held == {"c": 1}


async def test_abandoned_waiter_raises_and_frees_its_place():
    gate = FairGate(1)
    await gate.acquire("a")
    gone = asyncio.Event()
    waiting = asyncio.ensure_future(gate.acquire("b", gone=gone))
    await settle()
    gone.set()
    with pytest.raises(Abandoned):
        await waiting
    assert gate.waiting == 0
    gate.release("a")
    assert gate.idle


async def test_timeout_raises_and_holds_nothing():
    gate = FairGate(1)
    await gate.acquire("a")
    with pytest.raises(asyncio.TimeoutError):
        await gate.acquire("b", timeout=0.05)
    assert gate.waiting == 0 and gate.held == {"a": 1}


async def test_a_slot_granted_to_a_waiter_cancelled_at_once_passes_on():
    gate, order = FairGate(1), []
    await gate.acquire("a")
    first = start(gate, "b", order)
    second = start(gate, "c", order)
    await settle()
    gate.release("a")  # granted to b, but b is cancelled before it resumes
    first.cancel()
    await settle()
    assert order == ["c"] and second.done() and gate.held == {"c": 1}
    assert gate.in_flight == 1


async def test_no_limit_when_slots_unknown():
    gate = FairGate(0)
    for _ in range(50):
        await gate.acquire("a")
    assert gate.in_flight == 50 and gate.waiting == 0
