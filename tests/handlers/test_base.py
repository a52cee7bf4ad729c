"""The edge of every bodhi request (handlers/base.py): what clients get for bad keys, CORS
through Jupyter's own hooks, request ids in replies and logs, and server activity."""

from __future__ import annotations

import logging
from datetime import datetime

import openai
import pytest

from ..conftest import until
from .anonymous import http, login  # noqa: F401  (fixtures)
from .test_errors import assert_error_shape
from .test_tokens_api import CHAT, bearer, fake_aliases, mint

ORIGIN = "https://example.org"


@pytest.fixture
def bodhi_config(fake_engine, smollm2_path):
    config = fake_aliases(fake_engine, smollm2_path)
    config["ServerApp"] = {"allow_origin": ORIGIN}
    config["ModelRegistry"]["aliases"]["broken"] = {
        "model": str(smollm2_path),
        "server": {"extra_args": ["--fake-exit-on-start", "3"]}}
    return config


# -- 401 for API clients --------------------------------------------------------------------
@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer sk-not-a-key"},
    {"Authorization": "token wrong"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"x-api-key": "sk-not-a-key"},
], ids=["none", "bearer", "token", "basic", "x-api-key"])
async def test_a_key_that_authenticates_nobody_gets_openais_401(http, bodhi_app, login,
                                                                headers):
    for method, path, body in (("GET", "bodhi/v1/models", None),
                               ("POST", "bodhi/v1/chat/completions", CHAT),
                               ("POST", "bodhi/v1/embeddings", {"model": "fake-a",
                                                                "input": "x"})):
        resp = await http.request(method, path, json=body, headers=headers)
        assert resp.status_code == 401, resp.text
        assert resp.json() == {"error": {
            "message": resp.json()["error"]["message"], "type": "invalid_request_error",
            "code": "invalid_api_key", "param": None}}
        assert "xsrf" not in resp.text.lower()
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="bodhi"'
    assert bodhi_app.supervisor.starts_total == 0
    await bodhi_app.usage.flush()
    assert (await http.get("bodhi/app/usage", headers=login)).json()["total"] == 0


async def test_openai_sdk_raises_authentication_error(api_url, bodhi_app):
    llm = openai.AsyncOpenAI(base_url=api_url, api_key="sk-wrong", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError) as caught:
        await llm.chat.completions.create(model="fake-a",
                                          messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert caught.value.type == "invalid_request_error"
    with pytest.raises(openai.AuthenticationError):
        await llm.models.list()


async def test_a_browser_session_without_its_xsrf_token_still_gets_403(http, jupyter_token):
    await http.get("login")
    xsrf = http.cookies["_xsrf"]
    resp = await http.post("login", data={"password": jupyter_token, "_xsrf": xsrf})
    assert resp.status_code == 302
    err = assert_error_shape(await http.post("bodhi/v1/chat/completions", json=CHAT), 403)
    assert "xsrf" in err["message"].lower()
    resp = await http.post("bodhi/v1/chat/completions", json=CHAT,
                           headers={"X-XSRFToken": xsrf})
    assert resp.status_code == 200


# -- CORS for bodhi tokens, through Jupyter's prepare -----------------------------------------
async def test_bodhi_tokens_get_cors_headers_and_preflight_works(http, login):
    token = (await mint(http, login, name="web", scope="write"))["token"]
    headers = {**bearer(token), "Origin": ORIGIN}
    for resp in (await http.get("bodhi/v1/models", headers=headers),
                 await http.post("bodhi/v1/chat/completions", json=CHAT, headers=headers)):
        assert resp.status_code == 200
        assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    resp = await http.options("bodhi/v1/chat/completions", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert resp.status_code in (200, 204)
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "authorization" in resp.headers["Access-Control-Allow-Headers"].lower()
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]


# -- request ids --------------------------------------------------------------------------------
async def test_every_reply_carries_a_request_id(http, login):
    resp = await http.get("bodhi/v1/models", headers={**login, "X-Request-Id": "trace-42.a:b"})
    assert resp.headers["X-Request-Id"] == "trace-42.a:b"
    seen = set()
    for sent in (None, "has spaces", "x" * 65, "<script>", "a\tb"):
        headers = {**login, **({"X-Request-Id": sent} if sent else {})}
        for resp in (await http.get("bodhi/v1/models", headers=headers),
                     await http.get("bodhi/app/info", headers=headers),
                     await http.post("bodhi/v1/chat/completions", json={"model": 1},
                                     headers=headers),  # an error reply too
                     await http.get("bodhi/v1/models")):  # and a 401
            rid = resp.headers["X-Request-Id"]
            assert rid != sent and len(rid) == 16 and rid.isalnum()
            seen.add(rid)
    assert len(seen) == 20


async def test_log_lines_of_a_request_carry_its_id(http, login, caplog):
    caplog.set_level(logging.DEBUG)
    # a refused request: the bodhi line and Jupyter's access line
    await http.post("bodhi/v1/chat/completions", json={"model": "nope", "messages": []},
                    headers={**login, "X-Request-Id": "req-refused"})
    # an engine answering 500: the engine-failure line
    resp = await http.post("bodhi/v1/chat/completions", headers={
        **login, "X-Request-Id": "req-engine"}, json={
        "model": "fake-a", "messages": [{"role": "user", "content": "[status=500]"}]})
    assert resp.status_code == 502
    # an engine that cannot start: the supervisor's start lines
    resp = await http.post("bodhi/v1/chat/completions", headers={
        **login, "X-Request-Id": "req-start"}, json={**CHAT, "model": "broken"})
    assert resp.status_code == 502
    lines = [r.getMessage() for r in caplog.records]

    def tagged(rid):
        return [line for line in lines if line.endswith(f"[request_id={rid}]")]

    refused = tagged("req-refused")
    assert any(line.startswith("bodhi: POST") and "-> 400" in line for line in refused)
    assert any(line.startswith("400 POST") for line in refused)  # the access line
    engine = tagged("req-engine")
    assert any("-> 502 The engine for 'fake-a' failed" in line for line in engine)
    start = tagged("req-start")
    assert any(line.startswith("bodhi: starting llama-server for broken") for line in start)
    assert any("failed to load model (fake)" in line for line in start)


async def test_a_success_is_timed_by_jupyter_and_its_access_line_built_only_if_shown(
        http, login, monkeypatch):
    """Jupyter logs a success's access line at debug level and times every request in its
    own metric; bodhi builds that line only when some handler would show it, and keeps the
    metric either way."""
    from jupyter_server.base.handlers import log as jupyter_log
    from prometheus_client import REGISTRY

    labels = {"method": "POST", "status_code": "200",
              "handler": "bodhi_jupyter.handlers.openai.ChatCompletionsHandler"}

    def timed() -> float:
        return REGISTRY.get_sample_value("http_request_duration_seconds_count", labels) or 0

    shown = logging.Handler(logging.INFO)  # as a server without --debug logs
    records: list[logging.LogRecord] = []
    shown.emit = records.append
    logger = jupyter_log()
    monkeypatch.setattr(logger, "handlers", [shown])
    monkeypatch.setattr(logger, "propagate", False)
    built = []
    real = logger.makeRecord
    monkeypatch.setattr(logger, "makeRecord", lambda *a, **k: built.append(a[2]) or real(*a, **k))

    def access_lines(rid):
        return [m for m in (r.getMessage() for r in records)
                if m.startswith("200 POST /") and m.endswith(f"[request_id={rid}]")]

    before = timed()
    resp = await http.post("bodhi/v1/chat/completions", json=CHAT,
                           headers={**login, "X-Request-Id": "quiet"})
    assert resp.status_code == 200
    assert timed() == before + 1
    assert access_lines("quiet") == [] and logging.DEBUG not in built
    shown.setLevel(logging.DEBUG)  # --debug
    resp = await http.post("bodhi/v1/chat/completions", json=CHAT,
                           headers={**login, "X-Request-Id": "shown"})
    assert resp.status_code == 200
    assert timed() == before + 2 and len(access_lines("shown")) == 1


# -- activity -----------------------------------------------------------------------------------
async def test_api_use_counts_as_server_activity_while_streaming(http, login, client):
    async def last_activity() -> datetime:
        body = (await http.get("api/status", headers=login)).json()
        return datetime.fromisoformat(body["last_activity"].replace("Z", "+00:00"))

    before = await last_activity()
    body = {"model": "fake-a", "stream": True, "max_tokens": 3,
            "messages": [{"role": "user", "content": "[delay=0.3]"}]}
    async with client.stream("POST", "chat/completions", json=body) as resp:
        assert resp.status_code == 200
        lines = resp.aiter_lines()
        while not (await anext(lines)).startswith("data: "):
            pass
        during = await last_activity()
        assert during > before  # the stream's start counted
        async for _ in lines:
            pass
    await until(lambda: _later(last_activity, during))


async def _later(read, than) -> bool:
    return await read() > than


# -- logging -------------------------------------------------------------------------------------
def test_a_level_no_handler_emits_is_not_logged_at_all():
    """As traitlets sets an Application's logger up: the logger at DEBUG, its handler at
    the configured level. A debug line then costs no record unless some handler wants it."""
    from bodhi_jupyter.handlers.base import _RequestLog

    parent = logging.getLogger("bodhi-test-parent")
    parent.propagate = False
    logger = logging.getLogger("bodhi-test-parent.app")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = logging.Handler(logging.WARNING)
    records = []
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        log = _RequestLog(logger, {"request_id": "r1"})
        made = []
        real = logger.makeRecord
        logger.makeRecord = lambda *a, **k: made.append(1) or real(*a, **k)
        log.debug("200 GET /x")
        assert made == [] and records == []
        log.warning("404 GET /y")
        assert [r.getMessage() for r in records] == ["404 GET /y [request_id=r1]"]
        handler.setLevel(logging.DEBUG)  # --log-level=DEBUG reconfigures the handler
        log.debug("200 GET /x")
        assert records[-1].getMessage() == "200 GET /x [request_id=r1]"
        logger.propagate = True  # a handler further up (pytest's caplog, say) counts too
        handler.setLevel(logging.ERROR)
        parent.addHandler(up := logging.Handler(logging.INFO))
        try:
            assert log.isEnabledFor(logging.INFO) and not log.isEnabledFor(logging.DEBUG)
        finally:
            parent.removeHandler(up)
    finally:
        logger.removeHandler(handler)
        del logger.makeRecord
