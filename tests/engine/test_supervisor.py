"""Supervisor policy driven directly, without HTTP, against the fake engine (real child
processes whose timing and faults the test controls)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from bodhi_jupyter.engine.launcher import LlamaServerLauncher
from bodhi_jupyter.engine.process import EngineFailed, EngineState
from bodhi_jupyter.engine.supervisor import (
    CapacityError,
    EngineSupervisor,
    EngineUnavailable,
)
from bodhi_jupyter.models.registry import ResolvedModel, ServerOptions

from ..conftest import pid_alive, until


def model(name: str, *extra: str, path: str = "/models/fake.gguf") -> ResolvedModel:
    return ResolvedModel(name, path, "test", ServerOptions(ctx_size=512, parallel=2,
                                                         extra_args=tuple(extra)))


@pytest.fixture
def supervisor(fake_engine, tmp_path):
    launcher = LlamaServerLauncher(llama_server_path=str(fake_engine))
    sup = EngineSupervisor(launcher, log_dir=str(tmp_path / "logs"), keep_alive=-1,
                           stop_grace=1.0, start_timeout=10, capacity_timeout=2,
                           crash_backoff=0.3)
    yield sup
    sup.kill_all()



async def chat(engine, text="hi", stream=False, **extra):
    import json

    body = {"model": engine.model.id, "messages": [{"role": "user", "content": text}],
            "stream": stream, **extra}
    resp = await engine.forward("/v1/chat/completions", json.dumps(body).encode())
    return resp.status, await resp.read()


async def test_concurrent_first_requests_wait_on_one_start(supervisor):
    m = model("slow", "--fake-start-delay", "0.5")
    engines = await asyncio.gather(*(supervisor.acquire("alice", m) for _ in range(5)))
    assert len({id(e) for e in engines}) == 1
    assert supervisor.starts_total == 1
    assert engines[0].in_flight == 5
    assert engines[0].state == EngineState.READY
    for e in engines:
        supervisor.release(e)
    await supervisor.shutdown()


async def test_engine_gets_loopback_key_and_explicit_context(supervisor):
    async with supervisor.lease("alice", model("a")) as engine:
        assert "--ctx-size" in engine.command and "--host" in engine.command
        assert engine.command[engine.command.index("--host") + 1] == "127.0.0.1"
        env = open(f"/proc/{engine.pid}/environ", "rb").read().split(b"\0")
        keys = [v for v in env if v.startswith(b"LLAMA_API_KEY=")]
        assert len(keys) == 1 and len(keys[0]) > len("LLAMA_API_KEY=") + 20
        assert keys[0].split(b"=", 1)[1].decode() not in " ".join(engine.command)
        status, _ = await chat(engine)
        assert status == 200
    await supervisor.shutdown()


async def test_exit_during_start_reports_log_tail(supervisor):
    with pytest.raises(EngineUnavailable) as info:
        await supervisor.acquire("alice", model("broken", "--fake-exit-on-start", "3"))
    message = str(info.value)
    assert "exited during start-up with code 3" in message
    assert "failed to load model (fake)" in message
    assert supervisor.engines == {}


async def test_start_timeout_kills_the_process(supervisor):
    supervisor.start_timeout = 0.5
    with pytest.raises(EngineUnavailable, match="not ready within 0.5 s"):
        await supervisor.acquire("alice", model("stuck", "--fake-start-delay", "30"))
    assert supervisor.engines == {}
    log = next(Path(supervisor.log_dir).glob("*.log"))
    assert "loading" in log.read_text()


async def test_crash_is_noticed_and_next_request_restarts(supervisor):
    m = model("a")
    async with supervisor.lease("alice", m) as first:
        first_pid = first.pid
    os.kill(first_pid, signal.SIGKILL)
    await until(lambda: first.state == EngineState.CRASHED)
    assert supervisor.engines == {}
    assert supervisor.crashes_total == 1
    async with supervisor.lease("alice", m) as second:
        assert second.pid != first_pid
        assert (await chat(second))[0] == 200
    await supervisor.shutdown()


async def test_crash_mid_stream_breaks_the_request_and_is_recorded(supervisor, caplog):
    m = model("a")
    with pytest.raises(EngineFailed) as info:
        async with supervisor.lease("alice", m) as engine:
            await chat(engine, "[crash-after=2]", stream=True, max_tokens=10)
    # the request's error names the exit, not the broken socket
    assert info.value.cause == "llama-server exited with code 1"
    await until(lambda: engine.state == EngineState.CRASHED)
    assert engine.exit_code == 1
    assert engine.exit_cause == "llama-server exited with code 1"
    assert supervisor.failure_count("alice", m) == 1
    assert "crashed (llama-server exited with code 1)" in caplog.text


async def test_forward_to_a_dead_engine_names_its_exit(supervisor):
    m = model("a")
    async with supervisor.lease("alice", m) as engine:
        assert engine.exit_cause is None
        os.kill(engine.pid, signal.SIGKILL)
        with pytest.raises(EngineFailed, match="exited with code -9"):
            await chat(engine)


async def test_a_failing_idle_unload_is_logged_not_lost(supervisor, caplog):
    supervisor.keep_alive = 0
    m = model("a")
    async with supervisor.lease("alice", m) as engine:
        async def broken_stop(grace):
            raise RuntimeError("stop went wrong")
        engine.stop = broken_stop
    await until(lambda: "stop went wrong" in caplog.text)
    assert "background task unload" in caplog.text
    assert len(supervisor._tasks) == 0
    engine.kill_now()


async def test_repeated_failures_back_off_then_recover(supervisor):
    m = model("flaky", "--fake-exit-on-start", "2")
    for _ in range(2):
        with pytest.raises(EngineUnavailable, match="exited during start-up"):
            await supervisor.acquire("alice", m)
    with pytest.raises(EngineUnavailable, match="failed 2 times in a row") as info:
        await supervisor.acquire("alice", m)
    assert 0 < info.value.retry_after <= 0.3
    assert supervisor.starts_total == 2  # the back-off refused without starting
    await until(lambda: supervisor.next_start_in("alice", m) == 0, timeout=2)
    with pytest.raises(EngineUnavailable, match="exited during start-up"):
        await supervisor.acquire("alice", m)
    assert supervisor.starts_total == 3


async def test_idle_unload_counts_from_end_of_stream(supervisor):
    supervisor.keep_alive = 1
    m = model("a")
    async with supervisor.lease("alice", m) as engine:
        # a stream that lasts longer than keep_alive
        status, body = await chat(engine, "[delay=0.3]", stream=True, max_tokens=5)
        assert status == 200 and body.count(b"data: ") == 7
        assert engine.state == EngineState.READY
    released = time.monotonic()
    assert engine.state == EngineState.READY and engine.id in supervisor._timers
    await until(lambda: engine.state == EngineState.STOPPED, timeout=5)
    assert time.monotonic() - released >= 0.9
    assert not pid_alive(engine.pid)


async def test_keep_alive_zero_unloads_after_each_request(supervisor):
    supervisor.keep_alive = 0
    async with supervisor.lease("alice", model("a")) as engine:
        assert (await chat(engine))[0] == 200
    await until(lambda: engine.state == EngineState.STOPPED)
    assert supervisor.engines == {}


async def test_keep_alive_negative_never_schedules_unload(supervisor):
    async with supervisor.lease("alice", model("a")) as engine:
        pass
    assert supervisor._timers == {} and engine.state == EngineState.READY
    await supervisor.shutdown()


async def test_lru_idle_engine_is_evicted_at_the_cap(supervisor):
    supervisor.max_loaded = 2
    async with supervisor.lease("alice", model("a")) as a:
        pass
    async with supervisor.lease("alice", model("b")) as b:
        pass
    async with supervisor.lease("alice", model("a")):
        pass  # a is now the most recently used
    async with supervisor.lease("alice", model("c")):
        assert b.state == EngineState.STOPPED and not pid_alive(b.pid)
        assert a.state == EngineState.READY
    assert {e.model.id for e in supervisor.engines.values()} == {"a", "c"}
    await supervisor.shutdown()


async def test_per_user_cap_evicts_only_that_users_engine(supervisor):
    supervisor.max_loaded_per_user = 1
    async with supervisor.lease("alice", model("a")) as a:
        pass
    async with supervisor.lease("bob", model("b")) as b:
        pass
    async with supervisor.lease("alice", model("c")):
        assert a.state == EngineState.STOPPED
        assert b.state == EngineState.READY
    await supervisor.shutdown()


async def test_all_busy_at_cap_gives_capacity_error_after_timeout(supervisor):
    supervisor.max_loaded = 1
    supervisor.capacity_timeout = 0.5
    async with supervisor.lease("alice", model("a")):
        started = time.monotonic()
        with pytest.raises(CapacityError, match="busy"):
            await supervisor.acquire("alice", model("b"))
        assert time.monotonic() - started >= 0.45
    assert supervisor.starts_total == 1
    await supervisor.shutdown()


async def test_waiting_request_gets_engine_when_one_frees_up(supervisor):
    supervisor.max_loaded = 1
    lease_a = await supervisor.acquire("alice", model("a"))
    waiter = asyncio.ensure_future(supervisor.acquire("alice", model("b")))
    await asyncio.sleep(0)  # let the waiter reach the cap
    assert not waiter.done()
    supervisor.release(lease_a)
    engine_b = await asyncio.wait_for(waiter, 10)
    assert engine_b.model.id == "b" and lease_a.state == EngineState.STOPPED
    supervisor.release(engine_b)
    await supervisor.shutdown()


async def test_shutdown_escalates_to_sigkill(supervisor):
    supervisor.stop_grace = 0.5
    async with supervisor.lease("alice", model("stubborn", "--fake-ignore-sigterm")) as e:
        pid = e.pid
    started = time.monotonic()
    await supervisor.shutdown()
    assert e.proc.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5
    assert not pid_alive(pid)
    with pytest.raises(EngineUnavailable, match="shutting down"):
        await supervisor.acquire("alice", model("a"))


async def test_port_taken_between_choice_and_bind_is_retried(supervisor, monkeypatch):
    import socket

    from bodhi_jupyter.engine import process

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_free_port = process.free_port
    handed_out = []

    def racy_free_port(host):
        port = taken if not handed_out else real_free_port(host)
        handed_out.append(port)
        return port

    monkeypatch.setattr(process, "free_port", racy_free_port)
    try:
        async with supervisor.lease("alice", model("a")) as engine:
            assert engine.port != taken and handed_out[0] == taken
            assert (await chat(engine))[0] == 200
    finally:
        squatter.close()
    await supervisor.shutdown()
