"""Model metadata in bodhi/v1/models and bodhi/app/models, the capability checks that
refuse what a model cannot do before any engine starts, and the sentence-embedding model
(all-minilm-l6-v2, converted from its PyPI package) served by the real engine."""

from __future__ import annotations

import math
import os

import anthropic
import openai
import pytest

from ..conftest import DEMO_MODEL_ID
from ..models.test_metadata import write_gguf

MINILM = "all-minilm-l6-v2"
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def bodhi_config(tmp_path):
    """A base model without a chat template (a tiny GGUF: no engine is ever started for
    it), and an alias that gives it one."""
    models = tmp_path / "models"
    models.mkdir()
    write_gguf(models / "tiny-base.gguf")
    return {"ModelDiscovery": {"model_dirs": [str(models)]},
            "ModelRegistry": {"aliases": {"tiny-chatml": {
                "model": "tiny-base", "server": {"chat_template": "chatml"}}}}}


def cosine(a, b) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


async def test_models_carry_their_metadata(client, http, smollm2_path):
    listed = {m["id"]: m for m in (await client.get("models")).json()["data"]}
    demo = listed[DEMO_MODEL_ID]
    assert demo["object"] == "model"
    assert {k: demo[k] for k in ("source", "architecture", "quantization", "context_length",
                                 "chat_template", "capabilities")} == {
        "source": "package", "architecture": "llama", "quantization": "Q4_1",
        "context_length": 8192, "chat_template": True, "capabilities": ["chat", "completion"]}
    assert demo["file_size"] == os.path.getsize(smollm2_path)
    assert demo["embedding_length"] == 576 and demo["parameter_count"] > 100_000_000

    minilm = listed[MINILM]
    assert minilm["capabilities"] == ["embedding"]
    assert (minilm["architecture"], minilm["embedding_length"], minilm["source"]) == (
        "bert", 384, "package")
    assert listed["tiny-base"]["capabilities"] == ["completion"]
    assert listed["tiny-base"]["source"] == "directory"
    alias = listed["tiny-chatml"]
    assert alias["source"] == "alias" and alias["chat_template"] is True
    assert alias["capabilities"] == ["chat", "completion"]

    one = (await client.get(f"models/{MINILM}")).json()
    assert one == minilm
    app = {m["id"]: m for m in (await http.get("app/models")).json()["data"]}
    assert app[MINILM]["capabilities"] == ["embedding"]
    assert app[DEMO_MODEL_ID]["quantization"] == "Q4_1"
    assert app[DEMO_MODEL_ID]["request_defaults"]["system_prompt"]


async def test_the_embedding_model_scores_similar_sentences_closer(openai_client, bodhi_app):
    sentences = ["A man is eating food.", "A man is eating a piece of bread.",
                 "The new movie is awesome."]
    reply = await openai_client.embeddings.create(model=MINILM, input=sentences)
    food, bread, movie = (d.embedding for d in reply.data)
    assert len(food) == 384
    similar, unrelated = cosine(food, bread), cosine(food, movie)
    assert similar > 0.6, similar  # sentence-transformers gives 0.755; so does the engine
    assert similar - unrelated > 0.3, (similar, unrelated)
    again = await openai_client.embeddings.create(model=MINILM, input="x", dimensions=384)
    assert len(again.data[0].embedding) == 384
    assert bodhi_app.supervisor.starts_total == 1


async def test_asking_an_embedding_model_to_chat_is_400_before_any_engine(
        openai_client, server_url, jupyter_token, bodhi_app):
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client.chat.completions.create(model=MINILM, messages=MSG)
    body = caught.value.body
    assert (body["code"], body["param"], body["type"]) == (
        "model_not_chat_capable", "model", "invalid_request_error")
    assert MINILM in body["message"] and "/v1/embeddings" in body["message"]
    with pytest.raises(openai.BadRequestError, match="embedding model"):
        await openai_client.responses.create(model=MINILM, input="hi")
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client.completions.create(model=MINILM, prompt="hi")
    assert caught.value.body["code"] == "model_not_completion_capable"
    claude = anthropic.AsyncAnthropic(base_url=f"{server_url}bodhi", api_key=jupyter_token,
                                      max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude.messages.create(model=MINILM, max_tokens=8, messages=MSG)
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "/v1/embeddings" in caught.value.body["error"]["message"]
    assert bodhi_app.supervisor.starts_total == 0


async def test_chat_with_a_model_without_a_template_is_400_saying_how_to_add_one(
        openai_client, bodhi_app):
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client.chat.completions.create(model="tiny-base", messages=MSG)
    body = caught.value.body
    assert (body["code"], body["param"]) == ("no_chat_template", "model")
    assert "chat_template" in body["message"] and "/v1/completions" in body["message"]
    assert bodhi_app.supervisor.starts_total == 0
