"""Bounded cost on the inference endpoints: bodies over ``BodhiApp.max_body_size`` get 413
without being held, prompts that cannot fit a slot get 400 without touching an engine
(the fake engine, so a start would show), and the real engine's memory stays put."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import openai
import psutil
import pytest

from ..conftest import DEMO_MODEL_ID
from .test_errors import assert_error_shape
from .test_tokens_api import fake_aliases

CAP = 256 * 1024


def chat(model: str, text: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


class TestWithTheFakeEngine:
    @pytest.fixture
    def bodhi_config(self, fake_engine, smollm2_path):
        config = fake_aliases(fake_engine, smollm2_path)
        config["BodhiApp"] = {"max_body_size": CAP}
        return config

    async def test_a_body_over_the_cap_gets_413(self, client, openai_client, bodhi_app):
        big = chat("fake-a", "x" * (2 * CAP))
        assert_error_shape(await client.post("chat/completions", json=big), 413,
                           "request_too_large")

        async def chunked():  # no Content-Length: dropped once it passes the cap
            for _ in range(8):
                yield b"x" * (CAP // 2)

        resp = await client.post("completions", content=chunked(),
                                 headers={"Content-Type": "application/json"})
        assert_error_shape(resp, 413, "request_too_large")
        with pytest.raises(openai.APIStatusError) as caught:
            await openai_client.chat.completions.create(**big)
        assert caught.value.status_code == 413 and caught.value.code == "request_too_large"
        # just under the cap still works
        assert (await client.post("chat/completions",
                                  json=chat("fake-a", "x" * 1000))).status_code == 200
        assert bodhi_app.supervisor.starts_total == 1

    async def test_a_declared_length_too_large_to_drain_is_refused_at_once(self, api_url,
                                                                            jupyter_token):
        url = urlsplit(api_url)  # the server runs on this loop: talk to it with asyncio
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        writer.write(f"POST {url.path}/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: token {jupyter_token}\r\n"
                     f"Content-Length: {10 ** 12}\r\n\r\n".encode())
        reply = await asyncio.wait_for(reader.read(), 10)  # answered, then hung up unread
        writer.close()
        assert reply.startswith(b"HTTP/1.1 413 ")
        assert b'"request_too_large"' in reply

    @pytest.mark.parametrize("path, body, param", [
        ("chat/completions", chat("fake-a", "x" * 200_000), "messages"),
        ("completions", {"model": "fake-a", "prompt": ["short", "x" * 200_000]}, "prompt"),
        ("completions", {"model": "fake-a", "prompt": list(range(1025))}, "prompt"),
        ("embeddings", {"model": "fake-a", "input": "x" * 200_000}, "input"),
    ])
    async def test_a_prompt_that_cannot_fit_is_refused_without_an_engine(
            self, client, bodhi_app, path, body, param):
        resp = await client.post(path, json=body)
        err = assert_error_shape(resp, 400, "context_length_exceeded", param)
        assert "maximum context length is 1024 tokens" in err["message"]
        assert bodhi_app.supervisor.starts_total == 0
        await bodhi_app.usage.flush()
        assert (await client.get("../app/usage")).json()["total"] == 0


async def test_the_real_engine_stays_small_under_huge_prompts(client, bodhi_app):
    """The real engine: a 50 MB prompt (over the 16 MiB default cap) and 12 MB ones (under
    it, far over the context) neither reach it nor grow it; small chats keep working."""
    small = chat(DEMO_MODEL_ID, "Say hi.", max_tokens=4, temperature=0)
    assert (await client.post("chat/completions", json=small)).status_code == 200
    (proc,) = (await client.get("../app/processes")).json()["data"]
    engine = psutil.Process(proc["pid"])
    before = engine.memory_info().rss

    huge = chat(DEMO_MODEL_ID, "word " * (10 * 1024 * 1024))
    large = chat(DEMO_MODEL_ID, "word " * (12 * 1024 * 1024 // 5))
    for _ in range(2):
        assert_error_shape(await client.post("chat/completions", json=huge), 413,
                           "request_too_large")
        assert_error_shape(await client.post("chat/completions", json=large), 400,
                           "context_length_exceeded", "messages")
        assert (await client.post("chat/completions", json=small)).status_code == 200
    growth = engine.memory_info().rss - before
    assert growth < 100 * 1024 * 1024, f"engine grew by {growth / 2**20:.0f} MiB"
    assert bodhi_app.supervisor.starts_total == 1
