"""Ollama requests as the engine receives them, and tool calls both ways (the fake engine
records every body and answers a request with tools with a call of the first one)."""

from __future__ import annotations

import json

import httpx
import ollama
import pytest

from ..conftest import until
from .usage_rows import usage_rows

TOOLS = [{"type": "function", "function": {
    "name": "add_one", "description": "Add one to n",
    "parameters": {"type": "object", "properties": {"n": {"type": "integer"}},
                   "required": ["n"]}}}]
QUESTION = [{"role": "user", "content": "What is 1 + 1? Use the tool."}]


@pytest.fixture
def record(tmp_path):
    return tmp_path / "engine-requests.jsonl"


@pytest.fixture
def bodhi_config(fake_engine, smollm2_path, record):
    return {
        "LlamaServerLauncher": {"llama_server_path": str(fake_engine), "threads": 0,
                                "extra_args": ["--fake-record", str(record)]},
        "ModelRegistry": {"aliases": {"fake": {"model": str(smollm2_path), "request": {
            "system_prompt": "Answer in one sentence."}}}},
    }


def received(record, path: str) -> list[dict]:
    lines = record.read_text().splitlines() if record.exists() else []
    return [r["body"] for r in map(json.loads, lines) if r["path"] == path]


@pytest.fixture
def ollama_client(server_url, jupyter_token):
    return ollama.AsyncClient(host=f"{server_url}bodhi", timeout=60,
                              headers={"Authorization": f"Bearer {jupyter_token}"})


async def test_tool_calls_whole_and_streamed(ollama_client, record):
    reply = await ollama_client.chat(model="fake:latest", messages=QUESTION, tools=TOOLS,
                                     stream=False)
    (call,) = reply.message.tool_calls
    assert (call.function.name, call.function.arguments) == ("add_one", {"n": 1})
    parts = [p async for p in await ollama_client.chat(model="fake", messages=QUESTION,
                                                       tools=TOOLS, stream=True)]
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert [(c.function.name, c.function.arguments) for c in calls] == [("add_one", {"n": 1})]
    assert parts[-1].done

    # the result goes back by tool name and reaches the engine as an answer to that call
    await ollama_client.chat(model="fake", stream=False, tools=TOOLS, messages=[
        *QUESTION, {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "add_one", "arguments": {"n": 1}}}]},
        {"role": "tool", "content": "2", "tool_name": "add_one"}])
    first, streamed, third = received(record, "/v1/chat/completions")
    assert first["tools"] == TOOLS and first["stream"] is False
    assert first["messages"][0] == {"role": "system", "content": "Answer in one sentence."}
    assert streamed["stream"] is True and streamed["stream_options"] == {"include_usage": True}
    sent_call = third["messages"][2]["tool_calls"][0]
    assert json.loads(sent_call["function"]["arguments"]) == {"n": 1}
    assert third["messages"][3] == {"role": "tool", "content": "2",
                                    "tool_call_id": sent_call["id"]}


async def test_options_reach_the_engine_under_its_names(ollama_client, record):
    await ollama_client.generate(model="fake", prompt="hi", stream=False, format="json",
                                 options={"num_predict": 9, "top_k": 3, "min_p": 0.1,
                                          "stop": ["x"], "seed": 7, "num_ctx": 99})
    (sent,) = received(record, "/v1/chat/completions")
    assert {k: sent[k] for k in ("max_tokens", "top_k", "min_p", "stop", "seed")} == {
        "max_tokens": 9, "top_k": 3, "min_p": 0.1, "stop": ["x"], "seed": 7}
    assert sent["response_format"] == {"type": "json_object"} and "num_ctx" not in sent
    assert sent["messages"][-1] == {"role": "user", "content": "hi"}


async def test_engine_crash_mid_stream_ends_with_an_error_line(ollama_client, bodhi_app):
    stream = await ollama_client.chat(model="fake", stream=True, options={"num_predict": 10},
                                      messages=[{"role": "user", "content": "[crash-after=2]"}])
    seen = []
    with pytest.raises(ollama.ResponseError, match="exited with code 1"):
        async for part in stream:
            seen.append(part)
    assert len(seen) >= 1 and not any(p.done for p in seen)
    with pytest.raises(ollama.ResponseError) as e:  # whole: the 502 of the OpenAI routes
        await ollama_client.chat(model="fake", stream=False, messages=[
            {"role": "user", "content": "[crash-after=0]"}])
    assert e.value.status_code == 502


async def test_a_client_leaving_mid_stream_stops_the_engine_and_is_499(server_url,
                                                                       jupyter_token,
                                                                       bodhi_app):
    async with httpx.AsyncClient(timeout=30) as c:
        async with c.stream("POST", f"{server_url}bodhi/api/chat", json={
                "model": "fake", "options": {"num_predict": 50},
                "messages": [{"role": "user", "content": "[delay=0.2]"}]},
                headers={"Authorization": f"Bearer {jupyter_token}"}) as resp:
            async for _line in resp.aiter_lines():
                break  # hang up after the first line
    (engine,) = bodhi_app.supervisor.engines.values()
    await until(lambda: "client disconnected" in engine.log_path.read_text(), timeout=5)
    await until(lambda: engine.in_flight == 0, timeout=5)
    (row,) = await usage_rows(bodhi_app, "ollama/chat")
    assert row.status == 499

