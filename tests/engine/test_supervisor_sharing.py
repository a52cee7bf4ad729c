"""Shared engines and fair admission in the supervisor, against the fake engine (real child
processes), without HTTP."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from bodhi_jupyter.engine.launcher import LlamaServerLauncher
from bodhi_jupyter.engine.supervisor import SHARED, CapacityError, ClientGone, EngineSupervisor

from ..conftest import until
from .test_supervisor import model


@pytest.fixture
def supervisor(fake_engine, tmp_path):
    launcher = LlamaServerLauncher(llama_server_path=str(fake_engine))
    sup = EngineSupervisor(launcher, log_dir=str(tmp_path / "logs"), keep_alive=-1,
                           stop_grace=1.0, start_timeout=10, capacity_timeout=5)
    yield sup
    sup.kill_all()


class Holder:
    """Leases held open until the test lets them go, in the order they were admitted."""

    def __init__(self, supervisor: EngineSupervisor, m):
        self.supervisor, self.model = supervisor, m
        self.admitted: list[str] = []
        self._done: dict[int, asyncio.Event] = {}
        self.tasks: list[asyncio.Task] = []

    def lease(self, user: str, gone: asyncio.Event | None = None) -> int:
        n = len(self.tasks)
        done = self._done[n] = asyncio.Event()

        async def run():
            async with self.supervisor.lease(user, self.model, gone=gone):
                self.admitted.append(f"{user}{n}")
                await done.wait()
        self.tasks.append(asyncio.ensure_future(run()))
        return n

    def finish(self, n: int) -> None:
        self._done[n].set()

    async def close(self):
        for event in self._done.values():
            event.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def test_shared_engines_serve_every_user_from_one_process(supervisor):
    supervisor.share_engines = True
    m = model("shared")
    async with supervisor.lease("alice", m) as a, supervisor.lease("bob", m) as b:
        assert a is b and a.owner == SHARED and a.in_flight == 2
    assert supervisor.starts_total == 1
    assert supervisor.engines_of("alice") == [] and supervisor.engines_of(SHARED) == [a]
    await supervisor.shutdown()


async def test_per_user_engines_by_default(supervisor):
    m = model("own")
    async with supervisor.lease("alice", m) as a, supervisor.lease("bob", m) as b:
        assert a is not b and (a.owner, b.owner) == ("alice", "bob")
    assert supervisor.starts_total == 2
    await supervisor.shutdown()


async def test_a_newcomer_is_admitted_before_a_busy_users_queue(supervisor):
    supervisor.share_engines = True
    m = model("slots2")  # parallel=2
    held = Holder(supervisor, m)
    first = [held.lease("a") for _ in range(2)]
    await until(lambda: len(held.admitted) == 2)
    queued = [held.lease("a") for _ in range(4)]
    await until(lambda: supervisor.gate("a", m).waiting == 4)
    held.lease("b")
    await until(lambda: supervisor.gate("a", m).waiting == 5)
    engine = next(iter(supervisor.engines.values()))
    assert engine.in_flight == 2  # never more than the slots at the engine
    assert supervisor.leased_keys("b") == {engine.id}
    held.finish(first[0])
    await until(lambda: len(held.admitted) == 3)
    assert held.admitted[-1] == "b6"
    held.finish(first[1])
    await until(lambda: len(held.admitted) == 4)
    assert held.admitted[-1] == "a2"  # a's own requests in their order
    await held.close()
    assert supervisor.gate("a", m) is None and supervisor.leased_keys("a") == set()
    assert engine.in_flight == 0
    await supervisor.shutdown()


async def test_waiting_for_a_slot_is_bounded_by_queue_timeout(supervisor):
    supervisor.queue_timeout = 0.3  # capacity_timeout (5 s) is for a cap on loaded engines
    m = model("one", "-np", "1")  # the flag in extra args wins over parallel=2
    held = Holder(supervisor, m)
    held.lease("alice")
    await until(lambda: held.admitted)
    with pytest.raises(CapacityError, match=r"All 1 slots.*queue_timeout"):
        async with supervisor.lease("alice", m):
            pass
    assert supervisor.gate("alice", m).waiting == 0
    await held.close()
    await supervisor.shutdown()


async def test_a_client_that_leaves_while_queued_gives_its_place_up(supervisor):
    m = model("one", "-np", "1")
    held = Holder(supervisor, m)
    first = held.lease("alice")
    await until(lambda: held.admitted)
    gone = asyncio.Event()
    leaving = asyncio.ensure_future(_enter(supervisor, "alice", m, gone))
    held.lease("alice")
    await until(lambda: supervisor.gate("alice", m).waiting == 2)
    gone.set()
    with pytest.raises(ClientGone):
        await leaving
    held.finish(first)
    await until(lambda: len(held.admitted) == 2)
    assert held.admitted == ["alice0", "alice1"]
    await held.close()
    await supervisor.shutdown()


async def _enter(supervisor, user, m, gone):
    async with supervisor.lease(user, m, gone=gone):
        pass


async def test_without_fair_admission_every_request_goes_to_the_engine(supervisor):
    supervisor.fair_admission = False
    m = model("one", "-np", "1")
    async with contextlib.AsyncExitStack() as stack:
        engines = [await stack.enter_async_context(supervisor.lease("alice", m))
                   for _ in range(3)]
        assert engines[0].in_flight == 3 and supervisor.gate("alice", m) is None
    await supervisor.shutdown()
