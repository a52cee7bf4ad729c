"""The Anthropic Messages API under bodhi/v1/messages, with the stock anthropic client
configured as its users do (base_url and api_key, so the key travels in x-api-key) and the
real engine; errors in Anthropic's own shape."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from ..conftest import DEMO_MODEL_ID
from .usage_rows import usage_rows

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0}  # this SDK version has no temperature argument


async def mint(server_url, jupyter_token, **body) -> str:
    async with httpx.AsyncClient(timeout=30) as c:
        resp = await c.post(f"{server_url}bodhi/app/tokens", json={"name": "t", **body},
                            headers={"Authorization": f"token {jupyter_token}"})
    assert resp.status_code == 201, resp.text
    return resp.json()["token"]


@pytest.fixture
def bodhi_config(smollm2_path):
    return {"ModelRegistry": {"aliases": {"terse": {"model": str(smollm2_path)}}}}


@pytest.fixture
def anthropic_for(server_url, jupyter_token, jp_asyncio_loop):
    """An anthropic client holding a fresh bodhi token (write scope unless told)."""
    clients = []

    async def make(**token) -> anthropic.AsyncAnthropic:
        key = await mint(server_url, jupyter_token, **({"scope": "write"} | token))
        clients.append(anthropic.AsyncAnthropic(base_url=f"{server_url}bodhi", api_key=key,
                                                max_retries=0, timeout=60))
        return clients[-1]

    yield make
    for c in clients:
        jp_asyncio_loop.run_until_complete(c.close())


async def test_message_answers_and_records_usage(anthropic_for, bodhi_app):
    client = await anthropic_for()
    reply = await client.messages.create(model=DEMO_MODEL_ID, max_tokens=24, extra_body=GREEDY,
                                         messages=QUESTION)
    assert reply.type == "message" and reply.role == "assistant"
    assert "paris" in reply.content[0].text.lower()
    prompt = reply.usage.input_tokens + (reply.usage.cache_read_input_tokens or 0)
    assert prompt > 0 and reply.usage.output_tokens > 0
    (row,) = await usage_rows(bodhi_app, "messages")
    assert (row.status, row.stream, row.token_id is not None) == (200, False, True)
    assert (row.prompt_tokens, row.completion_tokens) == (prompt, reply.usage.output_tokens)


async def test_streamed_message_and_usage_from_both_ends(anthropic_for, bodhi_app):
    client = await anthropic_for()
    async with client.messages.stream(model=DEMO_MODEL_ID, max_tokens=24, extra_body=GREEDY,
                                      messages=QUESTION) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert len(pieces) >= 3 and "paris" in "".join(pieces).lower()
    assert final.content[0].text == "".join(pieces)
    (row,) = await usage_rows(bodhi_app, "messages")
    assert (row.status, row.stream) == (200, True)
    # input tokens come in the first event, output tokens in the last ones
    assert row.prompt_tokens == final.usage.input_tokens + (
        final.usage.cache_read_input_tokens or 0) > 0
    assert row.completion_tokens == final.usage.output_tokens > 0


async def test_count_tokens_counts_what_would_be_sent(anthropic_for):
    client = await anthropic_for()
    bare = await client.messages.count_tokens(model=DEMO_MODEL_ID, messages=QUESTION)
    longer = await client.messages.count_tokens(
        model=DEMO_MODEL_ID, messages=QUESTION, system="Answer in one word, please.")
    assert 0 < bare.input_tokens < longer.input_tokens


async def test_errors_have_anthropics_shape(anthropic_for, server_url, bodhi_app):
    client = await anthropic_for()
    with pytest.raises(anthropic.NotFoundError) as caught:
        await client.messages.create(model="no-such-model", max_tokens=4, messages=QUESTION)
    assert caught.value.body == {"type": "error", "error": {
        "type": "not_found_error", "message": "The model 'no-such-model' does not exist"}}
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(model=DEMO_MODEL_ID, max_tokens=2**31,
                                     messages=QUESTION)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in caught.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError, match="must be"):
        await client.messages.create(model=DEMO_MODEL_ID, max_tokens=4,
                                     messages=[{"role": "wizard", "content": "hi"}])

    reader = await anthropic_for(scope="read")
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        await reader.messages.create(model=DEMO_MODEL_ID, max_tokens=4, messages=QUESTION)
    assert caught.value.body["error"]["type"] == "permission_error"
    only_alias = await anthropic_for(models=["terse"])
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        await only_alias.messages.count_tokens(model=DEMO_MODEL_ID, messages=QUESTION)
    assert "may not use the model" in caught.value.body["error"]["message"]

    async with anthropic.AsyncAnthropic(base_url=f"{server_url}bodhi", max_retries=0,
                                        api_key="bodhi_" + "x" * 43) as stranger:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await stranger.messages.create(model=DEMO_MODEL_ID, max_tokens=4,
                                           messages=QUESTION)
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "authentication_error"
    assert bodhi_app.supervisor.starts_total == 0
