"""Bad input gets a clear 4xx in the OpenAI error shape and starts or stores nothing."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from bodhi_jupyter.store.orm import ModelAlias

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
     "invalid_value", "messages[0]"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": [{"role": "wizard"}]}, 400,
     "invalid_value", "messages[0].role"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": MSG, "stream": "yes"}, 400,
     "invalid_value", "stream"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": MSG, "max_tokens": -5}, 400,
     "invalid_value", "max_tokens"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": MSG, "temperature": "hot"},
     400, "invalid_value", "temperature"),
    ("chat/completions", {"model": DEMO_MODEL_ID, "messages": MSG, "stop": [1]}, 400,
     "invalid_value", "stop"),
    ("chat/completions", {"model": "no-such-model", "messages": MSG}, 404, "model_not_found",
     "model"),
    ("completions", {"model": DEMO_MODEL_ID}, 400, "missing_required_field", "prompt"),
    ("completions", {"model": DEMO_MODEL_ID, "prompt": {"a": 1}}, 400, "invalid_value",
     "prompt"),
    ("embeddings", {"model": DEMO_MODEL_ID}, 400, "missing_required_field", "input"),
    ("embeddings", {"model": DEMO_MODEL_ID, "input": "x", "stream": True}, 400,
     "invalid_value", "stream"),
    ("embeddings", {"model": "no-such-model", "input": "x"}, 404, "model_not_found", "model"),
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
        expected_type = "not_found_error" if status == 404 else "invalid_request_error"
        assert err["type"] == expected_type, (path, body)
    assert bodhi_app.supervisor.starts_total == 0
    assert bodhi_app.supervisor.engines == {}
    with bodhi_app.database.session() as s:
        assert s.scalar(select(func.count()).select_from(ModelAlias)) == 0


async def test_unknown_model_retrieve_and_unknown_path(client):
    assert_error_shape(await client.get("models/nope:Q4_0"), 404, "model_not_found", "model")
    err = assert_error_shape(await client.get("no/such/endpoint"), 404, "not_found")
    assert "no/such/endpoint" in err["message"]


async def test_wrong_method_is_json_405(client):
    assert_error_shape(await client.get("chat/completions"), 405)


async def test_unauthenticated_requests_are_refused_with_error_json(api_url, bodhi_app):
    async with httpx.AsyncClient(timeout=30) as anon:
        resp = await anon.get(f"{api_url}/models")
        assert_error_shape(resp, 401, "invalid_api_key")
        resp = await anon.get(f"{api_url}/models",
                              headers={"Authorization": "Bearer wrong-token"})
        assert_error_shape(resp, 401, "invalid_api_key")
        resp = await anon.post(f"{api_url}/chat/completions",
                               json={"model": DEMO_MODEL_ID, "messages": MSG})
        assert_error_shape(resp, 401, "invalid_api_key")
    assert bodhi_app.supervisor.starts_total == 0
