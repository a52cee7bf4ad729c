"""Engine faults seen through HTTP, with the fake engine injecting them on cue."""

from __future__ import annotations

import json
import time

import openai
import pytest

from sqlalchemy import select

from bodhi_jupyter.engine.process import EngineState
from bodhi_jupyter.store.tables import usage_records
from bodhi_jupyter.usage import UsageQuery

FAKE = "/models/fake.gguf"

from ..conftest import until


@pytest.fixture
def bodhi_config(fake_engine, smollm2_path):
    target = str(smollm2_path)  # the fake ignores the file, but aliases must point at one
    return {
        "LlamaServerLauncher": {"llama_server_path": str(fake_engine), "threads": 0},
        "EngineSupervisor": {"keep_alive": -1, "stop_grace": 1.0, "crash_backoff": 30,
                             "capacity_timeout": 0.5},
        "ModelRegistry": {"aliases": {
            "fake-a": {"model": target},
            "fake-b": {"model": target, "server": {"ctx_size": 1024}},
            "broken": {"model": target, "server": {"extra_args": ["--fake-exit-on-start",
                                                                  "3"]}},
            "slow": {"model": target, "server": {"extra_args": ["--fake-start-delay",
                                                                "0.5"]}},
        }},
    }




def chat_body(model: str, text: str = "hi", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def sse_events(client, body) -> list:
    events = []
    async with client.stream("POST", "chat/completions", json=body) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    return events



async def test_crash_mid_stream_sends_error_event_then_restarts(client, bodhi_app,
                                                                openai_client):
    events = await sse_events(client, chat_body("fake-a", "[crash-after=2]", stream=True,
                                                max_tokens=10))
    assert len(events) == 3
    assert [json.loads(e)["object"] for e in events[:2]] == ["chat.completion.chunk"] * 2
    err = json.loads(events[2])["error"]
    assert err["code"] == "engine_error" and err["type"] == "server_error"
    assert "exited with code 1" in err["message"]
    assert bodhi_app.supervisor.crashes_total == 1

    # a request that succeeds resets the failure count, so the next crash restarts at once
    reply = await openai_client.chat.completions.create(
        model="fake-a", messages=[{"role": "user", "content": "hello"}])
    assert reply.choices[0].message.content.startswith("fake reply")

    # the stock client sees the error event as an APIError too
    stream = await openai_client.chat.completions.create(
        model="fake-a", messages=[{"role": "user", "content": "[crash-after=1]"}],
        stream=True)
    with pytest.raises(openai.APIError, match="exited with code 1"):
        async for _ in stream:
            pass

    reply = await openai_client.chat.completions.create(
        model="fake-a", messages=[{"role": "user", "content": "hello again"}])
    assert reply.choices[0].message.content.startswith("fake reply")
    assert bodhi_app.supervisor.starts_total == 3


async def test_crash_without_stream_is_502(client, bodhi_app):
    resp = await client.post("chat/completions", json=chat_body("fake-a", "[crash-after=0]"))
    assert resp.status_code == 502
    assert resp.json()["error"]["code"] == "engine_error"


async def test_repeated_crashes_back_off_with_cause(client, bodhi_app):
    for _ in range(2):
        resp = await client.post("chat/completions",
                                 json=chat_body("fake-a", "[crash-after=0]"))
        assert resp.status_code == 502
    resp = await client.post("chat/completions", json=chat_body("fake-a"))
    assert resp.status_code == 502
    err = resp.json()["error"]
    assert err["code"] == "engine_unavailable"
    assert "failed 2 times in a row" in err["message"] and "exited with code 1" in err["message"]
    assert 1 <= int(resp.headers["Retry-After"]) <= 31
    assert bodhi_app.supervisor.starts_total == 2


async def test_start_failure_reports_engine_log(client, bodhi_app):
    resp = await client.post("chat/completions", json=chat_body("broken"))
    assert resp.status_code == 502
    message = resp.json()["error"]["message"]
    assert "exited during start-up with code 3" in message
    assert "failed to load model (fake)" in message
    assert bodhi_app.supervisor.engines == {}


async def test_slow_start_is_awaited(client, bodhi_app):
    resp = await client.post("chat/completions", json=chat_body("slow"))
    assert resp.status_code == 200
    assert resp.json()["model"] == "slow"


async def test_upstream_client_errors_pass_through_and_server_errors_become_502(client):
    resp = await client.post("chat/completions", json=chat_body("fake-a", "[status=422]"))
    assert resp.status_code == 422
    assert resp.json()["error"]["message"] == "fake error 422"
    resp = await client.post("chat/completions", json=chat_body("fake-a", "[status=500]"))
    assert resp.status_code == 502
    assert "fake error 500" in resp.json()["error"]["message"]
    assert resp.json()["error"]["type"] == "server_error"


async def test_engine_500_that_describes_the_request_is_a_400(client, openai_client):
    """llama-server answers some bad requests with 500 (the SDKs would retry those); its
    message says so, and the client gets the 400 with that message."""
    resp = await client.post("chat/completions", json=chat_body("fake-a", "[parse-error]"))
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == "invalid_request"
    assert err["message"].startswith("Failed to parse messages: [json.exception")
    with pytest.raises(openai.BadRequestError, match="Failed to parse messages"):
        await openai_client.chat.completions.create(
            model="fake-a", messages=[{"role": "user", "content": "[parse-error]"}])


async def test_client_disconnect_cancels_upstream(client, bodhi_app):
    body = chat_body("fake-a", "[delay=0.1]", stream=True, max_tokens=200)
    async with client.stream("POST", "chat/completions", json=body) as resp:
        received = 0
        async for line in resp.aiter_lines():
            received += line.startswith("data: ")
            if received == 2:
                break
    (engine,) = bodhi_app.supervisor.engines.values()
    await until(lambda: "client disconnected" in engine.log_path.read_text(), timeout=5)
    await until(lambda: engine.in_flight == 0, timeout=5)


async def test_a_client_leaving_mid_stream_is_499_not_an_engine_error(client, bodhi_app):
    body = chat_body("fake-a", "[delay=0.2]", stream=True, max_tokens=50)
    async with client.stream("POST", "chat/completions", json=body) as resp:
        async for line in resp.aiter_lines():
            if line.startswith("data: "):
                break  # hang up while the engine is between chunks
    (engine,) = bodhi_app.supervisor.engines.values()
    await until(lambda: engine.in_flight == 0, timeout=5)
    await bodhi_app.usage.flush()
    with bodhi_app.database.read() as conn:
        assert conn.scalars(select(usage_records.c.status)).all() == [499]
    (row,) = UsageQuery(bodhi_app.database).aggregate(["model"])[0]
    assert (row["requests"], row["errors"]) == (1, 0)
    metrics = (await client.get("../metrics")).text
    assert 'bodhi_requests_total{endpoint="chat",model="fake-a",status="499"} 1.0' in metrics
    assert 'status="502"' not in metrics
    assert bodhi_app.supervisor.crashes_total == 0


async def test_all_engines_busy_at_cap_gives_503(client, bodhi_app):
    bodhi_app.supervisor.max_loaded = 1
    body = chat_body("fake-a", "[delay=0.2]", stream=True, max_tokens=10)
    async with client.stream("POST", "chat/completions", json=body) as held:
        lines = held.aiter_lines()  # kept open: breaking out of it would hang up
        while not (await lines.__anext__()).startswith("data: "):
            pass  # fake-a is now busy streaming
        resp = await client.post("chat/completions", json=chat_body("fake-b"))
        assert resp.status_code == 503
        err = resp.json()["error"]
        assert err["code"] == "capacity_exceeded" and "busy" in err["message"]
        assert resp.headers["Retry-After"]
        rest = [line async for line in lines if line.startswith("data: ")]
        assert rest[-1] == "data: [DONE]"
    # once the stream is over, fake-a is idle and is evicted for fake-b
    resp = await client.post("chat/completions", json=chat_body("fake-b"))
    assert resp.status_code == 200
    assert [e.model.id for e in bodhi_app.supervisor.engines.values()] == ["fake-b"]


async def test_idle_unload_only_after_stream_ends(client, bodhi_app):
    bodhi_app.supervisor.keep_alive = 1
    body = chat_body("fake-a", "[delay=0.25]", stream=True, max_tokens=8)  # ~2 s stream
    events = await sse_events(client, body)
    assert events[-1] == "[DONE]" and len(events) == 10
    (engine,) = bodhi_app.supervisor.engines.values()
    ended = time.monotonic()
    assert engine.state == EngineState.READY
    await until(lambda: engine.state == EngineState.STOPPED, timeout=5)
    assert time.monotonic() - ended >= 0.9
