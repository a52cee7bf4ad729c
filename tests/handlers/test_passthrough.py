"""What passes through to the engine untouched, and what an alias adds, seen from both
sides: the fake engine records every body it receives (--fake-record)."""

from __future__ import annotations

import json

import httpx
import pytest

TOOLS = [{"type": "function", "function": {
    "name": "add_one", "description": "Add one to n",
    "parameters": {"type": "object", "properties": {"n": {"type": "integer"}},
                   "required": ["n"]}}}]
CHOICE = {"type": "function", "function": {"name": "add_one"}}
CONVERSATION = [
    {"role": "user", "content": "What is 1 + 1? Use the tool."},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0", "type": "function",
         "function": {"name": "add_one", "arguments": "{\"n\": 1}"}}]},
    {"role": "tool", "tool_call_id": "call_0", "content": "2"},
    {"role": "user", "content": "And 2 + 1?"},
]


@pytest.fixture
def record(tmp_path):
    return tmp_path / "engine-requests.jsonl"


@pytest.fixture
def bodhi_config(fake_engine, smollm2_path, record, tmp_path):
    target = str(smollm2_path)  # the fake ignores the file, but aliases must point at one
    projector = tmp_path / "mmproj-fake.gguf"
    projector.write_bytes(b"GGUF")
    return {
        "LlamaServerLauncher": {"llama_server_path": str(fake_engine), "threads": 0,
                                "extra_args": ["--fake-record", str(record)]},
        "ModelRegistry": {"aliases": {
            "fake": {"model": target},
            "terse": {"model": target, "request": {
                "max_tokens": 3, "temperature": 0, "stop": "\n\n",
                "system_prompt": "Answer in one sentence."}},
            "seeing": {"model": target, "server": {"mmproj": str(projector)}},
        }},
    }


def received(record, path: str) -> list[dict]:
    lines = record.read_text().splitlines() if record.exists() else []
    return [r["body"] for r in map(json.loads, lines) if r["path"] == path]


async def test_tools_pass_through_both_ways(openai_client, record):
    reply = await openai_client.chat.completions.create(
        model="fake", messages=CONVERSATION, tools=TOOLS, tool_choice=CHOICE,
        parallel_tool_calls=False)
    (sent,) = received(record, "/v1/chat/completions")
    assert sent["tools"] == TOOLS and sent["tool_choice"] == CHOICE
    assert sent["messages"] == CONVERSATION and sent["parallel_tool_calls"] is False
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_fake_1", "add_one", '{"n": 1}')


async def test_streamed_tool_call_deltas_reach_the_client(openai_client, record):
    stream = await openai_client.chat.completions.create(
        model="fake", messages=CONVERSATION, tools=TOOLS, tool_choice="required",
        stream=True)
    deltas, finish = [], None
    async for chunk in stream:
        delta = chunk.choices[0].delta
        deltas.extend(delta.tool_calls or [])
        finish = chunk.choices[0].finish_reason or finish
    assert received(record, "/v1/chat/completions")[0]["tools"] == TOOLS
    assert finish == "tool_calls"
    assert deltas[0].id == "call_fake_1" and deltas[0].function.name == "add_one"
    assert "".join(d.function.arguments or "" for d in deltas) == '{"n": 1}'
    assert len(deltas) == 3  # id and name, then the arguments in two pieces


async def test_alias_defaults_use_each_apis_own_fields(openai_client, client, record):
    await openai_client.responses.create(model="terse", input="hi")
    await client.post("messages", json={"model": "terse", "messages": [
        {"role": "user", "content": "hi"}]})
    await client.post("messages/count_tokens", json={"model": "terse", "messages": [
        {"role": "user", "content": "hi"}]})
    (resp,) = received(record, "/v1/responses")
    assert (resp["instructions"], resp["max_output_tokens"], resp["temperature"]) == (
        "Answer in one sentence.", 3, 0)
    assert "stop" not in resp and "max_tokens" not in resp
    (msg,) = received(record, "/v1/messages")
    assert (msg["system"], msg["max_tokens"], msg["temperature"], msg["stop_sequences"]) == (
        "Answer in one sentence.", 3, 0, ["\n\n"])
    (count,) = received(record, "/v1/messages/count_tokens")
    assert count["system"] == "Answer in one sentence." and "max_tokens" not in count
    # what the request says wins over the alias
    await client.post("messages", json={"model": "terse", "max_tokens": 7, "system": "Be "
                                        "terse.", "messages": [{"role": "user",
                                                                "content": "hi"}]})
    assert received(record, "/v1/messages")[1]["system"] == "Be terse."
    assert received(record, "/v1/messages")[1]["max_tokens"] == 7


async def test_engine_dying_mid_stream_ends_with_each_apis_error_event(client):
    body = {"model": "fake", "max_tokens": 10, "stream": True,
            "messages": [{"role": "user", "content": "[crash-after=2]"}]}
    async with client.stream("POST", "messages", json=body) as resp:
        assert resp.status_code == 200
        text = "".join([chunk async for chunk in resp.aiter_text()])
    events = [e for e in text.split("\n\n") if e.strip()]
    assert events[0].startswith("event: message_start")
    assert events[-1].startswith("event: error\ndata: ")
    err = json.loads(events[-1].split("data: ", 1)[1])
    assert err["type"] == "error" and err["error"]["type"] == "api_error"
    assert "exited with code 1" in err["error"]["message"]

    body = {"model": "fake", "input": "[crash-after=1]", "stream": True}
    async with client.stream("POST", "responses", json=body) as resp:
        text = "".join([chunk async for chunk in resp.aiter_text()])
    last = [e for e in text.split("\n\n") if e.strip()][-1]
    assert json.loads(last.removeprefix("data: "))["error"]["type"] == "server_error"


async def test_images_need_a_model_with_a_projector(client, bodhi_app, record):
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}
    resp = await client.post("chat/completions", json={"model": "fake", **body})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "unsupported_content"
    assert bodhi_app.supervisor.starts_total == 0
    resp = await client.post("chat/completions", json={"model": "seeing", **body})
    assert resp.status_code == 200, resp.text
    assert received(record, "/v1/chat/completions")[0]["messages"] == body["messages"]
    (engine,) = bodhi_app.supervisor.engines.values()
    assert "--mmproj" in engine.command


async def test_x_api_key_carries_a_bodhi_token_on_openai_routes(server_url, jupyter_token):
    async with httpx.AsyncClient(base_url=f"{server_url}bodhi/", timeout=30) as c:
        made = await c.post("app/tokens", json={"name": "k", "scope": "write"},
                            headers={"Authorization": f"token {jupyter_token}"})
        key = made.json()["token"]
        resp = await c.post("v1/chat/completions", headers={"x-api-key": key}, json={
            "model": "fake", "messages": [{"role": "user", "content": "hi"}]})
        assert resp.status_code == 200, resp.text
        resp = await c.get("app/user", headers={"x-api-key": key})
        assert resp.json()["auth_method"] == "bodhi_token"
