"""The Ollama API under bodhi/api/, with the stock ollama client (async: the server runs
on the test's own event loop) against the real engine and the demo model."""

from __future__ import annotations

import json
import math

import httpx
import ollama
import pytest

from ..conftest import DEMO_MODEL_ID
from .usage_rows import usage_rows

QUESTION = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0, "num_predict": 16}


@pytest.fixture
def bodhi_config(smollm2_path):
    return {"ModelRegistry": {"aliases": {"terse": {"model": str(smollm2_path)}}}}


@pytest.fixture
def ollama_client(server_url, jupyter_token):
    return ollama.AsyncClient(host=f"{server_url}bodhi",
                              headers={"Authorization": f"Bearer {jupyter_token}"},
                              timeout=60)


async def test_tags_show_version_and_ps(ollama_client, bodhi_app, server_url, jupyter_token):
    tags = await ollama_client.list()
    names = {m.model for m in tags.models}
    assert {DEMO_MODEL_ID, "terse"} <= names
    demo = next(m for m in tags.models if m.model == DEMO_MODEL_ID)
    assert demo.size > 50_000_000 and len(demo.digest) == 64
    assert (demo.details.format, demo.details.family) == ("gguf", "llama")
    assert demo.details.quantization_level == "Q4_1"

    shown = await ollama_client.show(f"{DEMO_MODEL_ID}:latest")  # Ollama's default tag
    assert "completion" in shown.capabilities
    assert "<|im_start|>" in shown.template
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] > 0
    assert shown.modelfile.startswith("FROM ")

    async with httpx.AsyncClient() as c:
        version = await c.get(f"{server_url}bodhi/api/version",
                              headers={"Authorization": f"Bearer {jupyter_token}"})
    assert version.status_code == 200 and version.json()["version"]

    assert (await ollama_client.ps()).models == []
    await ollama_client.chat(model=DEMO_MODEL_ID, messages=QUESTION, stream=False,
                             options={"num_predict": 1})
    running = (await ollama_client.ps()).models
    assert [m.model for m in running] == [DEMO_MODEL_ID]
    assert running[0].context_length == 2048 and running[0].expires_at.year > 2300


async def test_chat_whole_and_streamed(ollama_client, bodhi_app, server_url, jupyter_token):
    reply = await ollama_client.chat(model=DEMO_MODEL_ID, messages=QUESTION, stream=False,
                                     options=GREEDY)
    assert reply.message.role == "assistant" and "paris" in reply.message.content.lower()
    assert reply.done and reply.done_reason in ("stop", "length")
    assert reply.prompt_eval_count > 0 and 0 < reply.eval_count <= 16
    assert reply.total_duration > reply.eval_duration > 0

    parts = [p async for p in await ollama_client.chat(model=DEMO_MODEL_ID, stream=True,
                                                       messages=QUESTION, options=GREEDY)]
    assert len(parts) > 2 and [p.done for p in parts].count(True) == 1 and parts[-1].done
    text = "".join(p.message.content for p in parts)
    assert text == reply.message.content  # greedy: the same answer
    last = parts[-1]
    assert last.eval_count == reply.eval_count and last.prompt_eval_count > 0
    assert last.eval_duration > 0 and last.done_reason == reply.done_reason

    # without "stream" Ollama streams (the client always sends it)
    async with httpx.AsyncClient(timeout=60) as c:
        resp = await c.post(f"{server_url}bodhi/api/chat", json={
            "model": DEMO_MODEL_ID, "messages": QUESTION, "options": GREEDY},
            headers={"Authorization": f"Bearer {jupyter_token}"})
    assert resp.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in resp.text.splitlines()]
    assert len(lines) > 2 and lines[-1]["done"] and not lines[0]["done"]

    rows = await usage_rows(bodhi_app, "ollama/chat")
    assert [(r.status, r.stream) for r in rows] == [(200, False), (200, True), (200, True)]
    assert (rows[0].prompt_tokens, rows[0].completion_tokens) == (
        reply.prompt_eval_count, reply.eval_count)
    assert (rows[1].prompt_tokens, rows[1].completion_tokens) == (
        last.prompt_eval_count, last.eval_count)


async def test_generate_options_and_load(ollama_client):
    prompt = "Write a long story about a dragon."
    short = await ollama_client.generate(model=DEMO_MODEL_ID, prompt=prompt, stream=False,
                                         options={"num_predict": 5, "temperature": 0})
    assert short.eval_count == 5 and short.done_reason == "length" and short.response

    probs = await ollama_client.generate(model=DEMO_MODEL_ID, prompt=prompt, stream=False,
                                         logprobs=True, top_logprobs=2,
                                         options={"num_predict": 3, "temperature": 0})
    assert len(probs.logprobs) == 3 and all(p.logprob <= 0 for p in probs.logprobs)
    assert len(probs.logprobs[0].top_logprobs) == 2
    assert "".join(p.token for p in probs.logprobs) == probs.response

    seeded = {"temperature": 1.0, "seed": 42, "num_predict": 12}
    a = await ollama_client.generate(model=DEMO_MODEL_ID, prompt=prompt, stream=False,
                                     options=seeded)
    b = await ollama_client.generate(model=DEMO_MODEL_ID, prompt=prompt, stream=False,
                                     options=seeded)
    assert a.response == b.response

    words = (await ollama_client.generate(model=DEMO_MODEL_ID, prompt="1, 2, 3, 4,",
                                          raw=True, stream=False,
                                          options={"temperature": 0, "num_predict": 20,
                                                   "stop": ["7"]})).response
    assert "5" in words and "7" not in words

    parts = [p async for p in await ollama_client.generate(
        model=DEMO_MODEL_ID, stream=True, prompt="What is the capital of France?",
        system="Be brief.", options=GREEDY)]
    assert len(parts) > 2 and parts[-1].done and parts[-1].eval_count > 0
    assert "".join(p.response for p in parts)

    loaded = await ollama_client.generate(model=DEMO_MODEL_ID, prompt="", stream=False)
    assert (loaded.done, loaded.done_reason, loaded.response) == (True, "load", "")
    assert [m.model for m in (await ollama_client.ps()).models] == [DEMO_MODEL_ID]
    gone = await ollama_client.generate(model=DEMO_MODEL_ID, keep_alive=0, stream=False)
    assert gone.done_reason == "unload" and (await ollama_client.ps()).models == []


async def test_embed_and_embeddings(ollama_client):
    out = await ollama_client.embed(model=DEMO_MODEL_ID, input=["a cat", "a dog"])
    assert len(out.embeddings) == 2 and len(out.embeddings[0]) == 576
    assert math.isclose(sum(x * x for x in out.embeddings[0]), 1.0, rel_tol=1e-3)
    assert out.prompt_eval_count > 0
    old = await ollama_client.embeddings(model=DEMO_MODEL_ID, prompt="a cat")
    assert len(old.embedding) == 576


async def test_errors_in_ollamas_shape(ollama_client, server_url, jupyter_token):
    with pytest.raises(ollama.ResponseError) as e:
        await ollama_client.chat(model="no-such-model", messages=QUESTION, stream=False)
    assert e.value.status_code == 404 and "no-such-model" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:  # streaming: the status before any line
        [p async for p in await ollama_client.chat(model="no-such-model", messages=QUESTION,
                                                   stream=True)]
    assert e.value.status_code == 404

    anonymous = ollama.AsyncClient(host=f"{server_url}bodhi", timeout=30)
    with pytest.raises(ollama.ResponseError) as e:
        await anonymous.list()
    assert e.value.status_code == 401 and "API key" in e.value.error

    async with httpx.AsyncClient(timeout=30) as c:
        auth = {"Authorization": f"Bearer {jupyter_token}"}
        bad = await c.post(f"{server_url}bodhi/api/chat", content=b"{nope", headers=auth)
        assert bad.status_code == 400 and isinstance(bad.json()["error"], str)
        typed = await c.post(f"{server_url}bodhi/api/chat", headers=auth, json={
            "model": DEMO_MODEL_ID, "options": {"temperature": "hot"}})
        assert typed.status_code == 400 and "options.temperature" in typed.json()["error"]
        raw = await c.post(f"{server_url}bodhi/api/generate", headers=auth, json={
            "model": DEMO_MODEL_ID, "prompt": "x", "suffix": "y"})
        assert raw.status_code == 400 and "suffix" in raw.json()["error"]


async def test_scopes(ollama_client, server_url, jupyter_token):
    async with httpx.AsyncClient(timeout=30) as c:
        minted = await c.post(f"{server_url}bodhi/app/tokens", json={"name": "r",
                                                                     "scope": "read"},
                              headers={"Authorization": f"token {jupyter_token}"})
    reader = ollama.AsyncClient(host=f"{server_url}bodhi", timeout=30,
                                headers={"Authorization": f"Bearer {minted.json()['token']}"})
    assert (await reader.list()).models
    with pytest.raises(ollama.ResponseError) as e:
        await reader.chat(model=DEMO_MODEL_ID, messages=QUESTION, stream=False)
    assert e.value.status_code == 403 and "write" in e.value.error


async def test_a_tokens_model_list_applies(server_url, jupyter_token):
    async with httpx.AsyncClient(timeout=30) as c:
        minted = await c.post(f"{server_url}bodhi/app/tokens", json={
            "name": "w", "scope": "write", "models": ["terse"]},
            headers={"Authorization": f"token {jupyter_token}"})
    limited = ollama.AsyncClient(host=f"{server_url}bodhi", timeout=30,
                                 headers={"Authorization": f"Bearer {minted.json()['token']}"})
    assert [m.model for m in (await limited.list()).models] == ["terse"]
    for call in (limited.show(DEMO_MODEL_ID),
                 limited.chat(model=DEMO_MODEL_ID, messages=QUESTION, stream=False)):
        with pytest.raises(ollama.ResponseError) as e:
            await call
        assert e.value.status_code == 403 and DEMO_MODEL_ID in e.value.error
