"""Bad input gets a clear 4xx in the OpenAI error shape and starts or stores nothing."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from bodhi_jupyter.store.tables import model_aliases

from ..conftest import DEMO_MODEL_ID

MSG = [{"role": "user", "content": "hi"}]

CASES = [
    # (path, body, status, code, param)
    ("chat/completions", b"{not json", 400, "invalid_json", None),
    ("chat/completions", b"[1, 2]", 400, "invalid_json", None),
    ("chat/completions", {"messages": MSG}, 400, "missing_required_field", "model"),
    ("chat/completions", {"model": 3, "messages": MSG}, 400, "invalid_value", "model"),
    ("chat/completions", {"model": DEMO_MODEL_ID}, 400, "missing_required_field",
     "messages"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": []}, 400, "invalid_value",
     "messages"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": [{"content": "x"}]}, 400,
     "missing_required_field", "messages[0].role"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": [{"role": "wizard"}]}, 400,
     "invalid_value", "messages[0].role"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": MSG, "stream": "yes"}, 400,
     "invalid_value", "stream"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": MSG, "max_tokens": -5}, 400,
     "invalid_value", "max_tokens"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": MSG, "temperature": "hot"},
     400, "invalid_value", "temperature"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": MSG, "stop": [1]}, 400,
     "invalid_value", "stop[0]"),
    ("chat/completions", {"model": "no-such-model", "messages": MSG}, 404, "model_not_found",
     "model"),
    ("completions", {"model": DEMO_MODEL_ID}, 400, "missing_required_field", "prompt"),
    ("completions", {"model": DEMO_MODEL_ID, "prompt": {"a": 1}}, 400, "invalid_value",
     "prompt"),
    ("embeddings", {"model": DEMO_MODEL_ID}, 400, "missing_required_field", "input"),
    ("embeddings", {"model": DEMO_MODEL_ID, "input": "x", "stream": True}, 400,
     "invalid_value", "stream"),
    ("embeddings", {"model": "no-such-model", "input": "x"}, 404, "model_not_found", "model"),
    # client mistakes the engine would answer with a 500 (and SDKs would retry)
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": MSG, "tools": {"a": 1}}, 400,
     "invalid_value", "tools"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": MSG,
                          "tools": [{"type": "function"}]}, 400, "missing_required_field",
     "tools[0].function"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": MSG,
                          "tools": [{"type": "function", "function": {"name": 5}}]}, 400,
     "invalid_value", "tools[0].function.name"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": MSG, "tool_choice": "bogus"},
     400, "invalid_value", "tool_choice"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": [
        {"role": "user", "content": [{"type": "text"}]}]}, 400, "missing_required_field",
     "messages[0].content[0].text"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": "x"}]}, 400,
     "invalid_value", "messages[1].tool_calls"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}, 400,
     "unsupported_content", "messages[0].content[1]"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]}, 400,
     "unsupported_content", "messages[0].content[0]"),
    # numbers the engine would misread (its 400 says -2147483648) or take modulo 2^32
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": MSG, "max_tokens": 2**31},
     400, "invalid_value", "max_tokens"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": MSG,
                          "max_completion_tokens": 2**40}, 400, "invalid_value",
     "max_completion_tokens"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": MSG, "n_predict": 2**31},
     400, "invalid_value", "n_predict"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": MSG, "top_k": 2**31}, 400,
     "invalid_value", "top_k"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": MSG, "seed": 2**32}, 400,
     "invalid_value", "seed"),
    ("completions", {"model": DEMO_MODEL_ID, "prompt": "x", "max_tokens": 2**31}, 400,
     "invalid_value", "max_tokens"),
    # what Python's json module accepts but no engine parses
    ("chat/completions", b'{"model": "m", "messages": [], "temperature": NaN}', 400,
     "invalid_json", "temperature"),
    ("chat/completions", b'{"model": "m", "messages": [{"role": "user", "content": "x"}], '
     b'"top_p": -Infinity}', 400, "invalid_json", "top_p"),
    ("chat/completions", b'{"model": "m", "messages": [{"role": "user", "content": "x"}], '
     b'"temperature": 1e400}', 400, "invalid_json", "temperature"),
    ("chat/completions", b'{"model": "m", "messages": [{"role": "user", "content": '
     b'"a \\ud800 b"}]}', 400, "invalid_json", "messages[0].content"),
    ("embeddings", b'{"model": "m", "input": ["ok", "\\udfff"]}', 400, "invalid_json",
     "input[1]"),
    # embeddings cannot be shortened: a size other than the model's is refused up front
    ("embeddings", {"model": DEMO_MODEL_ID, "input": "x", "dimensions": 64}, 400,
     "invalid_value", "dimensions"),
    ("embeddings", {"model": DEMO_MODEL_ID, "input": "x", "dimensions": 0}, 400,
     "invalid_value", "dimensions"),
    # the Responses and Messages APIs
    ("responses", {"model": DEMO_MODEL_ID}, 400, "missing_required_field", "input"),
    ("responses", {"model": DEMO_MODEL_ID, "input": 5}, 400, "invalid_value", "input"),
    ("responses", {"model": DEMO_MODEL_ID, "input": "x", "max_output_tokens": 2**31}, 400,
     "invalid_value", "max_output_tokens"),
    ("responses", {"model": DEMO_MODEL_ID, "input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}]}, 400,
     "unsupported_content", "input[0].content[0]"),
    ("responses", {"model": "no-such-model", "input": "x"}, 404, "model_not_found", "model"),
]

#: every endpoint that reads a JSON body, with a path that exists
JSON_ENDPOINTS = [
    ("POST", "v1/chat/completions"), ("POST", "v1/completions"), ("POST", "v1/embeddings"),
    ("POST", "v1/responses"), ("POST", "v1/messages"), ("POST", "v1/messages/count_tokens"),
    ("POST", "app/processes"), ("POST", "app/tokens"), ("PUT", "app/tokens/some-id"),
    ("PUT", "app/settings/EngineSupervisor.keep_alive"),
]




def assert_error_shape(resp, status, code=None, param=None):
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "code", "param"}
    assert isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code
    assert err["param"] == param
    return err


async def test_bad_requests_are_rejected_and_change_nothing(client, bodhi_app):
    for path, body, status, code, param in CASES:
        content = body if isinstance(body, bytes) else httpx.Request(
            "POST", "http://x", json=body).content
        resp = await client.post(path, content=content,
                                 headers={"Content-Type": "application/json"})
        err = assert_error_shape(resp, status, code, param)
        # OpenAI's type for every client error, 404 included
        assert err["type"] == "invalid_request_error", (path, body)
    assert bodhi_app.supervisor.starts_total == 0
    assert bodhi_app.supervisor.engines == {}
    with bodhi_app.database.read() as conn:
        assert conn.scalar(select(func.count()).select_from(model_aliases)) == 0


async def test_deep_or_malformed_json_is_400_on_every_endpoint(http, bodhi_app):
    deep = b'{"model": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    deep_list = b"[" * 100_000 + b"]" * 100_000
    for method, path in JSON_ENDPOINTS:
        for raw in (deep, deep_list, b'{"model": "x",', b'{"model": "x"} trailing'):
            resp = await http.request(method, path, content=raw,
                                      headers={"Content-Type": "application/json"})
            if path.startswith("v1/messages"):
                assert resp.status_code == 400, (path, resp.text)
                assert resp.json()["error"]["type"] == "invalid_request_error"
            else:
                assert_error_shape(resp, 400, "invalid_json", None)
    assert bodhi_app.supervisor.starts_total == 0


async def test_nesting_within_the_bound_is_fine(client):
    # 60 levels inside a tool's JSON schema: valid JSON, checked on to the model lookup
    params = b'{"type": "object", "x": ' + b"[" * 55 + b"]" * 55 + b"}"
    raw = (b'{"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}], '
           b'"tools": [{"type": "function", "function": {"name": "f", "parameters": '
           + params + b"}}]}")
    assert_error_shape(await client.post("chat/completions", content=raw), 404,
                       "model_not_found", "model")


async def test_unknown_model_retrieve_and_unknown_path(client):
    err = assert_error_shape(await client.get("models/nope:Q4_0"), 404, "model_not_found",
                             "model")
    assert err["type"] == "invalid_request_error"
    err = assert_error_shape(await client.get("no/such/endpoint"), 404, "not_found")
    assert "no/such/endpoint" in err["message"]
    assert err["type"] == "invalid_request_error"


async def test_wrong_method_is_json_405(client):
    err = assert_error_shape(await client.get("chat/completions"), 405)
    assert err["type"] == "invalid_request_error"


async def test_unauthenticated_requests_are_refused_with_error_json(api_url, bodhi_app):
    async with httpx.AsyncClient(timeout=30) as anon:
        resp = await anon.get(f"{api_url}/models")
        assert assert_error_shape(resp, 401, "invalid_api_key")["type"] == "invalid_request_error"
        resp = await anon.get(f"{api_url}/models",
                              headers={"Authorization": "Bearer wrong-token"})
        assert_error_shape(resp, 401, "invalid_api_key")
        resp = await anon.post(f"{api_url}/chat/completions",
                               json={"model": DEMO_MODEL_ID, "messages": MSG})
        assert_error_shape(resp, 401, "invalid_api_key")
    assert bodhi_app.supervisor.starts_total == 0
