"""The stock openai client against a live Jupyter server with the extension and the real
llama.cpp engine serving SmolLM2."""

from __future__ import annotations

import json
import math
import os

import gguf
import httpx
import pytest

from ..conftest import DEMO_MODEL_ID

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]


def embedding_length(path) -> int:
    reader = gguf.GGUFReader(str(path))
    arch = reader.fields["general.architecture"]
    name = bytes(arch.parts[arch.data[0]]).decode()
    field = reader.fields[f"{name}.embedding_length"]
    return int(field.parts[field.data[0]][0])


def cosine(a, b) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.fixture
def hf_cache_model(_isolated_hf_home, smollm2_path):
    """The demo file laid out as the Hugging Face cache does (snapshot symlink to a blob)."""
    repo = _isolated_hf_home / "hub" / "models--bartowski--SmolLM2-135M-Instruct-GGUF"
    blob = repo / "blobs" / "abc123"
    snap = repo / "snapshots" / "0123456789abcdef"
    blob.parent.mkdir(parents=True)
    snap.mkdir(parents=True)
    os.symlink(smollm2_path, blob)
    os.symlink(blob, snap / "SmolLM2-135M-Instruct-Q4_K_M.gguf")
    return "bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M"


async def test_list_and_retrieve_models(hf_cache_model, openai_client):  # file first
    models = await openai_client.models.list()
    ids = {m.id for m in models.data}
    assert {DEMO_MODEL_ID, hf_cache_model} <= ids
    assert all(m.object == "model" and m.owned_by == "bodhi" for m in models.data)
    one = await openai_client.models.retrieve(hf_cache_model)  # id with '/' and ':'
    assert one.id == hf_cache_model


async def test_chat_non_streaming_answers_sensibly(openai_client):
    reply = await openai_client.chat.completions.create(
        model=DEMO_MODEL_ID, messages=CAPITAL, temperature=0, max_tokens=30)
    assert reply.object == "chat.completion"
    assert reply.model == DEMO_MODEL_ID
    assert "paris" in reply.choices[0].message.content.lower()
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 0


async def test_chat_streaming_delivers_chunks(openai_client):
    stream = await openai_client.chat.completions.create(
        model=DEMO_MODEL_ID, messages=CAPITAL, temperature=0, max_tokens=30, stream=True)
    pieces = [c.choices[0].delta.content async for c in stream
              if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 3
    assert "paris" in "".join(pieces).lower()


async def test_stream_is_sse_ending_with_done_even_when_json_is_accepted(
        api_url, jupyter_token):
    """The openai client sends Accept: application/json; the reply must still stream."""
    body = {"model": DEMO_MODEL_ID, "messages": CAPITAL, "max_tokens": 16, "stream": True,
            "temperature": 0}
    headers = {"Authorization": f"Bearer {jupyter_token}", "Accept": "application/json"}
    events = []
    async with httpx.AsyncClient(timeout=60) as client:
        async with client.stream("POST", f"{api_url}/chat/completions", json=body,
                                 headers=headers) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            assert resp.headers["cache-control"] == "no-cache"
            async for line in resp.aiter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) >= 3
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


async def test_text_completions(openai_client):
    reply = await openai_client.completions.create(
        model=DEMO_MODEL_ID, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert reply.object == "text_completion"
    assert reply.choices[0].text.strip()
    stream = await openai_client.completions.create(
        model=DEMO_MODEL_ID, prompt="One, two, three,", max_tokens=8, temperature=0,
        stream=True)
    texts = [c.choices[0].text async for c in stream if c.choices]
    assert len(texts) >= 2


async def test_embeddings_have_model_dimension_and_meaning(openai_client, smollm2_path,
                                                           bodhi_app):
    sentences = ["A man is eating food.", "A man is eating a piece of bread.",
                 "The stock market fell sharply after the announcement."]
    reply = await openai_client.embeddings.create(model=DEMO_MODEL_ID, input=sentences)
    vectors = [d.embedding for d in sorted(reply.data, key=lambda d: d.index)]
    assert len(vectors) == 3
    assert {len(v) for v in vectors} == {embedding_length(smollm2_path)}
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    # embeddings run in their own engine started with --embedding
    engines = list(bodhi_app.supervisor.engines.values())
    assert [e.embedding for e in engines] == [True]
    assert "--embedding" in " ".join(engines[0].command)


async def test_concurrent_first_requests_share_one_start(openai_client, bodhi_app):
    import asyncio

    replies = await asyncio.gather(*(
        openai_client.chat.completions.create(model=DEMO_MODEL_ID, messages=CAPITAL,
                                              temperature=0, max_tokens=8)
        for _ in range(4)))
    assert all(r.choices[0].message.content for r in replies)
    assert bodhi_app.supervisor.starts_total == 1
    assert len(bodhi_app.supervisor.engines) == 1



async def test_engine_500_about_the_request_is_a_400_with_its_message(openai_client,
                                                                      bodhi_app):
    """A message 'name' that is not a string passes our checks (we do not model every
    field) and the real engine answers 500 "Failed to parse messages: ..."; that is the
    client's mistake, so a 400 the SDK does not retry."""
    import openai

    with pytest.raises(openai.BadRequestError, match="Failed to parse messages") as caught:
        await openai_client.chat.completions.create(
            model=DEMO_MODEL_ID, max_tokens=4,
            messages=[{"role": "user", "content": "hi", "name": 5}])
    assert caught.value.status_code == 400
    assert caught.value.body["type"] == "invalid_request_error"
    # the engine is fine and keeps answering
    reply = await openai_client.chat.completions.create(
        model=DEMO_MODEL_ID, messages=CAPITAL, temperature=0, max_tokens=4)
    assert reply.choices[0].message.content
    assert bodhi_app.supervisor.crashes_total == 0


async def test_embeddings_dimensions_equal_to_the_models_pass(openai_client, smollm2_path,
                                                              bodhi_app):
    import openai

    size = embedding_length(smollm2_path)  # read with the gguf package, not our reader
    reply = await openai_client.embeddings.create(model=DEMO_MODEL_ID, input="hello",
                                                  dimensions=size)
    assert len(reply.data[0].embedding) == size
    with pytest.raises(openai.BadRequestError, match=f"must be {size}") as caught:
        await openai_client.embeddings.create(model=DEMO_MODEL_ID, input="hello",
                                              dimensions=size // 2)
    assert caught.value.body["param"] == "dimensions"
