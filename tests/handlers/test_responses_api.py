"""The OpenAI Responses API under bodhi/v1/responses, with the stock openai client and the
real engine: plain and streamed, and the tokens land in the usage records."""

from __future__ import annotations

import openai
import pytest

from ..conftest import DEMO_MODEL_ID
from .usage_rows import usage_rows

QUESTION = "What is the capital of France?"


async def test_plain_response_answers_and_records_usage(openai_client, bodhi_app):
    reply = await openai_client.responses.create(model=DEMO_MODEL_ID, input=QUESTION,
                                                 temperature=0, max_output_tokens=24)
    assert reply.object == "response" and reply.status == "completed"
    assert "paris" in reply.output_text.lower()
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    (row,) = await usage_rows(bodhi_app, "responses")
    assert (row.status, row.stream) == (200, False)
    assert (row.prompt_tokens, row.completion_tokens) == (reply.usage.input_tokens,
                                                          reply.usage.output_tokens)


async def test_streamed_response_delivers_typed_events(openai_client, bodhi_app):
    stream = await openai_client.responses.create(
        model=DEMO_MODEL_ID, input=[{"role": "user", "content": [
            {"type": "input_text", "text": QUESTION}]}],
        temperature=0, max_output_tokens=24, stream=True)
    kinds, deltas, final = [], [], None
    async for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        if event.type == "response.completed":
            final = event.response
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert len(deltas) >= 3 and "paris" in "".join(deltas).lower()
    assert final.output_text == "".join(deltas)
    (row,) = await usage_rows(bodhi_app, "responses")
    assert (row.status, row.stream) == (200, True)
    assert (row.prompt_tokens, row.completion_tokens) == (final.usage.input_tokens,
                                                          final.usage.output_tokens)


async def test_responses_errors_are_openai_errors(openai_client, bodhi_app):
    with pytest.raises(openai.NotFoundError) as caught:
        await openai_client.responses.create(model="no-such-model", input="hi")
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client.responses.create(model=DEMO_MODEL_ID, input="hi",
                                             max_output_tokens=2**31)
    assert caught.value.body["param"] == "max_output_tokens"
    assert bodhi_app.supervisor.starts_total == 0
