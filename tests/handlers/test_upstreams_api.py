"""Remote upstreams over HTTP: a second, independently started llama.cpp server (the demo
model behind an API key) registered as an upstream and used through the stock openai
client; the fake engine for timing."""

from __future__ import annotations

import json
import logging
import time

import openai
import pytest
from sqlalchemy import text

from ..conftest import DEMO_MODEL_ID
from ..remote_servers import closed_port_url, fake_server, llama_server
from .usage_rows import usage_rows

KEY = "sk-remote-4f1c9a7e2b"
PLAIN = [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def remote_llama(tmp_path_factory, smollm2_path):
    server = llama_server(smollm2_path, tmp_path_factory.mktemp("remote") / "llama.log", KEY)
    server.wait_healthy(90)
    yield server
    server.stop()


@pytest.fixture
def bodhi_config(tmp_path):
    return {"UpstreamRegistry": {"secret_key_file": str(tmp_path / "bodhi-secret.key")}}


@pytest.fixture
def captured_logs():
    """Every log record of the server process while the test runs."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield records
    root.removeHandler(handler)
    root.setLevel(old)


def text_of(records) -> str:
    out = []
    for r in records:
        try:
            out.append(r.getMessage())
        except Exception:  # a third-party record with odd args
            out.append(str(r.msg))
    return "\n".join(out)


async def test_a_remote_llama_server_serves_through_bodhi(
        http, openai_client, bodhi_app, remote_llama, tmp_path, captured_logs):
    resp = await http.post("app/upstreams", json={"name": "lab", "base_url":
                                                   remote_llama.base_url, "api_key": KEY})
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["has_api_key"] is True and created["prefix"] is None
    assert "api_key" not in created
    assert (await http.get("app/upstreams/lab/models")).json() == {"name": "lab",
                                                                  "models": ["demo"]}
    listed = (await http.get("app/upstreams")).json()
    assert [u["name"] for u in listed["data"]] == ["lab"] and listed["total"] == 1

    models = {m.id: m for m in (await openai_client.models.list()).data}
    assert models["lab/demo"].owned_by == "lab" and DEMO_MODEL_ID in models
    app_models = (await http.get("app/models")).json()["data"]
    assert {"id": "lab/demo", "source": "remote"}.items() <= next(
        m for m in app_models if m["id"] == "lab/demo").items()

    reply = await openai_client.chat.completions.create(
        model="lab/demo", messages=PLAIN, temperature=0, max_tokens=20)
    assert "paris" in reply.choices[0].message.content.lower()
    assert bodhi_app.supervisor.engines == {}  # nothing local was started

    stream = await openai_client.chat.completions.create(
        model="lab/demo", messages=PLAIN, temperature=0, max_tokens=20, stream=True)
    pieces = [c.choices[0].delta.content async for c in stream
              if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 3 and "paris" in "".join(pieces).lower()

    rows = await usage_rows(bodhi_app, "chat")
    assert [(r.model, r.stream, r.status) for r in rows] == [("lab/demo", False, 200),
                                                             ("lab/demo", True, 200)]
    assert rows[0].completion_tokens > 0 and rows[1].completion_tokens > 0

    # the key: encrypted in the row, in no response and no log line, its file 0600
    with bodhi_app.database.read() as conn:
        (stored,) = conn.execute(text("SELECT api_key_encrypted FROM upstreams")).one()
    assert KEY not in stored
    assert (tmp_path / "bodhi-secret.key").stat().st_mode & 0o777 == 0o600
    got = (await http.get("app/upstreams/lab")).text
    logged = text_of(captured_logs)
    assert "added upstream lab" in logged  # the capture sees the server's lines
    assert KEY not in got and KEY not in logged

    # a wrong key: the upstream's 401, as a 502 that names the upstream and keeps its words
    resp = await http.put("app/upstreams/lab", json={"base_url": remote_llama.base_url,
                                                     "api_key": "sk-wrong"})
    assert resp.status_code == 200 and resp.json()["has_api_key"]
    with pytest.raises(openai.APIStatusError) as info:
        await openai_client.chat.completions.create(model="lab/demo", messages=PLAIN,
                                                    max_tokens=4)
    assert info.value.status_code == 502
    err = info.value.body
    assert err["code"] == "upstream_auth_failed" and err["type"] == "server_error"
    assert "'lab'" in err["message"] and "401" in err["message"]
    assert "sk-wrong" not in err["message"]
    assert "sk-wrong" not in text_of(captured_logs) and KEY not in text_of(captured_logs)


async def test_a_token_limited_to_other_models_gets_403(http, api_url, bodhi_app,
                                                        remote_llama):
    await http.post("app/upstreams", json={"name": "lab", "base_url": remote_llama.base_url,
                                           "api_key": KEY, "models": ["demo"]})
    minted = (await http.post("app/tokens", json={"name": "local only", "scope": "write",
                                                  "models": [DEMO_MODEL_ID]})).json()
    limited = openai.AsyncOpenAI(base_url=api_url, api_key=minted["token"], max_retries=0)
    ids = [m.id for m in (await limited.models.list()).data]
    assert "lab/demo" not in ids and DEMO_MODEL_ID in ids
    with pytest.raises(openai.PermissionDeniedError) as info:
        await limited.chat.completions.create(model="lab/demo", messages=PLAIN, max_tokens=4)
    assert info.value.body["code"] == "model_not_allowed"
    assert await usage_rows(bodhi_app, "chat") == []  # refused before anything was sent


async def test_remote_streams_flush_each_chunk_and_faults_are_mapped(
        http, client, tmp_path, bodhi_app):
    fake = fake_server(tmp_path / "fake.log", alias="slow").wait_healthy(15)
    try:
        await http.post("app/upstreams", json={"name": "f", "base_url": fake.base_url,
                                               "prefix": "f:", "models": ["slow"]})
        body = {"model": "f:slow", "stream": True, "max_tokens": 3,
                "messages": [{"role": "user", "content": "[delay=0.4]"}]}
        arrivals = []
        async with client.stream("POST", "chat/completions", json=body) as resp:
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line.startswith("data: "):
                    arrivals.append((time.monotonic(), line[6:]))
        assert arrivals[-1][1] == "[DONE]"
        first = json.loads(arrivals[0][1])
        assert first["model"] == "slow"  # the upstream's own name went upstream
        assert arrivals[-1][0] - arrivals[0][0] > 0.6  # the first came before the rest

        for status, want, code in ((400, 400, None), (404, 404, None), (429, 429, None),
                                   (500, 502, "upstream_error"), (503, 502, "upstream_error")):
            msg = [{"role": "user", "content": f"[status={status}]"}]
            resp = await client.post("chat/completions", json={"model": "f:slow",
                                                               "messages": msg})
            assert resp.status_code == want, resp.text
            err = resp.json()["error"]
            assert f"fake error {status}" in err["message"]
            assert code is None or err["code"] == code
    finally:
        fake.stop()

    await http.post("app/upstreams", json={"name": "gone", "base_url": closed_port_url(),
                                           "models": ["m"]})
    resp = await client.post("chat/completions", json={
        "model": "gone/m", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 502
    err = resp.json()["error"]
    assert err["code"] == "upstream_unreachable" and "'gone'" in err["message"]


async def test_upstream_api_refuses_bad_input_and_needs_admin(http, bodhi_app):
    for body, param in (({"name": "x", "base_url": "gopher://h/v1"}, "base_url"),
                        ({"name": "x", "base_url": "http://u:p@h/v1"}, "base_url"),
                        ({"name": "x"}, "base_url"), ({"base_url": "http://h/v1"}, "name")):
        resp = await http.post("app/upstreams", json=body)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == param
    assert (await http.post("app/upstreams", json={"name": "x", "base_url":
                                                   "http://h/v1"})).status_code == 201
    assert (await http.post("app/upstreams", json={"name": "x", "base_url":
                                                   "http://h/v1"})).status_code == 409
    assert (await http.put("app/upstreams/nope", json={"base_url": "http://h/v1"})
            ).status_code == 404
    minted = (await http.post("app/tokens", json={"name": "w", "scope": "write"})).json()
    headers = {"Authorization": f"Bearer {minted['token']}"}
    resp = await http.post("app/upstreams", json={"name": "y", "base_url": "http://h/v1"},
                           headers=headers)
    assert resp.status_code == 403
    assert (await http.get("app/upstreams", headers=headers)).status_code == 200
    assert (await http.delete("app/upstreams/x")).status_code == 204
    assert (await http.get("app/upstreams/x")).status_code == 404
