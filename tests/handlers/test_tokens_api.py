"""API tokens through HTTP: lifecycle, storage, scopes and model limits on each endpoint
family, XSRF for cookies versus bearer tokens, and the rate limit."""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3

import httpx
import openai
import pytest
from sqlalchemy.engine import make_url
from tornado import web

from bodhi_jupyter.auth.identity import server_owner
from bodhi_jupyter.handlers import tokens as tokens_handlers
from bodhi_jupyter.handlers.base import BodhiHandler, requires

from .anonymous import http, login  # noqa: F401  (fixtures)
from .test_errors import assert_error_shape

CHAT = {"model": "fake-a", "messages": [{"role": "user", "content": "hi"}]}

from ..conftest import until


def fake_aliases(fake_engine, smollm2_path) -> dict:
    target = str(smollm2_path)  # the fake ignores the file, but aliases must point at one
    return {
        "LlamaServerLauncher": {"llama_server_path": str(fake_engine), "threads": 0},
        "ModelRegistry": {"aliases": {"fake-a": {"model": target},
                                      "fake-b": {"model": target,
                                                 "server": {"ctx_size": 1024}}}},
    }


@pytest.fixture
def bodhi_config(fake_engine, smollm2_path):
    return fake_aliases(fake_engine, smollm2_path)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def mint(http, login, status=201, **body) -> dict:
    resp = await http.post("bodhi/app/tokens", json=body, headers=login)
    assert resp.status_code == status, resp.text
    return resp.json()



# -- lifecycle ------------------------------------------------------------------------------
async def test_token_lifecycle(http, login):
    resp = await http.post("bodhi/app/tokens", json={"name": "notebook", "scope": "read"},
                           headers=login)
    assert resp.status_code == 201
    assert resp.headers["Cache-Control"] == "no-store"
    created = resp.json()
    token = created["token"]
    assert token.startswith("bodhi_") and len(token) - len("bodhi_") >= 32
    assert created["name"] == "notebook" and created["scope"] == "read"
    assert created["scopes"] == ["read"] and created["status"] == "active"
    assert created["owner"] == server_owner() and created["expires_at"] is None
    assert token.startswith(created["prefix"]) and created["last_used_at"] is None
    assert resp.headers["Location"].endswith(f"bodhi/app/tokens/{created['id']}")

    assert (await http.get("bodhi/v1/models", headers=bearer(token))).status_code == 200

    listing = (await http.get("bodhi/app/tokens", headers=login)).json()
    assert (listing["total"], listing["page"], listing["page_size"]) == (1, 1, 50)
    (shown,) = listing["data"]
    assert "token" not in shown and "hashed" not in shown
    assert token[len(created["prefix"]):][:20] not in str(listing)
    assert set(shown) >= {"id", "name", "prefix", "scope", "status", "created_at",
                          "last_used_at", "expires_at"}
    assert shown["prefix"] == created["prefix"] and shown["created_at"]
    assert shown["last_used_at"] is not None  # the request above

    url = f"bodhi/app/tokens/{created['id']}"
    resp = await http.put(url, json={"name": "renamed"}, headers=login)
    assert resp.status_code == 200 and resp.json()["name"] == "renamed"
    assert "token" not in resp.json()
    assert (await http.get(url, headers=login)).json()["name"] == "renamed"

    resp = await http.put(url, json={"status": "inactive"}, headers=login)
    assert resp.json()["status"] == "inactive"
    assert_error_shape(await http.get("bodhi/v1/models", headers=bearer(token)), 401,
                       "token_inactive")
    await http.put(url, json={"status": "active"}, headers=login)
    assert (await http.get("bodhi/v1/models", headers=bearer(token))).status_code == 200

    resp = await http.delete(url, headers=login)
    assert resp.status_code == 204 and resp.content == b""
    err = assert_error_shape(await http.get("bodhi/v1/models", headers=bearer(token)), 401,
                             "token_invalid")
    assert err["type"] == "invalid_request_error"  # what OpenAI sends for a bad key
    assert_error_shape(await http.get(url, headers=login), 404, "token_not_found")
    assert_error_shape(await http.delete(url, headers=login), 404, "token_not_found")
    assert (await http.get("bodhi/app/tokens", headers=login)).json()["total"] == 0


async def test_wrong_tokens_get_401_not_jupyters_403(http, login):
    token = (await mint(http, login, name="t", scope="read"))["token"]
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for bad in (wrong, "bodhi_" + secrets.token_urlsafe(32)):
        for method, path in (("GET", "bodhi/v1/models"), ("POST", "bodhi/v1/chat/completions"),
                             ("GET", "bodhi/app/tokens"), ("GET", "bodhi/no/such/path")):
            resp = await http.request(method, path, json=CHAT if method == "POST" else None,
                                      headers=bearer(bad))
            assert_error_shape(resp, 401, "token_invalid")


async def test_expiry(http, login, bodhi_app):
    old, _ = bodhi_app.tokens.create(server_owner(), "old", "read", expires_in=-1)
    assert_error_shape(await http.get("bodhi/v1/models", headers=bearer(old)), 401,
                       "token_expired")

    short = await mint(http, login, name="short", scope="read", expires_in=1)
    assert short["expires_at"] is not None

    async def refused():
        resp = await http.get("bodhi/v1/models", headers=bearer(short["token"]))
        if resp.status_code == 200:
            return False
        assert_error_shape(resp, 401, "token_expired")
        return True

    await until(refused, timeout=10)
    shown = (await http.get(f"bodhi/app/tokens/{short['id']}", headers=login)).json()
    assert shown["status"] == "expired"


async def test_bad_requests_are_400_and_create_nothing(http, login, bodhi_app):
    cases = [  # method, path, body, code, param
        ("POST", "bodhi/app/tokens", b"{nope", "invalid_json", None),
        ("POST", "bodhi/app/tokens", {"scope": "read"}, "missing_required_field", "name"),
        ("POST", "bodhi/app/tokens", {"name": "x" * 256, "scope": "read"}, "invalid_value",
         "name"),
        ("POST", "bodhi/app/tokens", {"name": "n", "scope": "god"}, "invalid_value",
         "scope"),
        ("POST", "bodhi/app/tokens", {"name": "n", "scope": "read", "expires_in": -3},
         "invalid_value", "expires_in"),
        ("POST", "bodhi/app/tokens", {"name": "n", "scope": "read", "expires_in": "1h"},
         "invalid_value", "expires_in"),
        ("POST", "bodhi/app/tokens", {"name": "n", "scope": "read", "models": ["nope"]},
         "model_not_found", "models"),
        ("POST", "bodhi/app/tokens", {"name": "n", "scope": "read", "owner": "bob"},
         "unknown_field", "owner"),
        ("GET", "bodhi/app/tokens?page=0", None, "invalid_value", "page"),
        ("GET", "bodhi/app/tokens?page_size=201", None, "invalid_value", "page_size"),
        ("GET", "bodhi/app/tokens?page_size=ten", None, "invalid_value", "page_size"),
    ]
    for method, path, body, code, param in cases:
        content = body if isinstance(body, bytes) or body is None else httpx.Request(
            "POST", "http://x", json=body).content
        resp = await http.request(method, path, content=content, headers=login)
        assert_error_shape(resp, 400, code, param)

    created = await mint(http, login, name="keep", scope="read")
    url = f"bodhi/app/tokens/{created['id']}"
    for body, param in [({"scope": "admin"}, "scope"), ({"models": []}, "models"),
                        ({"status": "revoked"}, "status"), ({}, None)]:
        assert_error_shape(await http.put(url, json=body, headers=login), 400, None, param)
    assert (await http.get("bodhi/app/tokens", headers=login)).json()["total"] == 1


async def test_listing_pages_and_admin_sees_everyones(http, login, bodhi_app):
    for i in range(5):
        bodhi_app.tokens.create(server_owner(), f"mine-{i}", "read")
    _, alices = bodhi_app.tokens.create("alice", "alice's", "write")

    page = (await http.get("bodhi/app/tokens?page=3&page_size=2", headers=login)).json()
    assert (page["total"], page["page"], page["page_size"]) == (5, 3, 2)
    assert len(page["data"]) == 1
    names = set()
    for n in (1, 2, 3, 4):
        names |= {t["name"] for t in (await http.get(
            f"bodhi/app/tokens?page={n}&page_size=2", headers=login)).json()["data"]}
    assert names == {f"mine-{i}" for i in range(5)}  # every token once, none of alice's

    # the owner of the server is its admin: everyone's tokens, by name or all
    shown = (await http.get("bodhi/app/tokens?user=alice", headers=login)).json()
    assert [t["id"] for t in shown["data"]] == [alices.id]
    assert (await http.get("bodhi/app/tokens?user=*", headers=login)).json()["total"] == 6
    url = f"bodhi/app/tokens/{alices.id}"
    assert (await http.get(url, headers=login)).json()["owner"] == "alice"
    assert (await http.put(url, json={"status": "inactive"}, headers=login)).status_code == 200
    assert (await http.delete(url, headers=login)).status_code == 204


# -- storage --------------------------------------------------------------------------------
async def test_database_holds_no_usable_token(http, login, bodhi_app):
    made = [await mint(http, login, name=f"t{i}", scope="write", models=["fake-a"])
            for i in range(3)]
    for m in made:  # used once, so last_used_at and any other bookkeeping is written
        assert (await http.get("bodhi/v1/models", headers=bearer(m["token"]))).status_code \
            == 200

    path = make_url(bodhi_app.database.url).database
    conn = sqlite3.connect(path)
    try:
        cells = []
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE "
                                             "type='table'")]
        assert "api_tokens" in tables
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                cells.extend(str(v) for v in row if v is not None)
        hashes = dict(conn.execute("SELECT id, hashed FROM api_tokens"))
    finally:
        conn.close()

    for m in made:
        token = m["token"]
        secret = token[len("bodhi_"):]
        pieces = {secret[i:i + 20] for i in range(len(secret) - 19)}
        for cell in cells:
            assert token not in cell
            assert not any(p in cell for p in pieces), "part of a secret is in the database"
        assert hashes[m["id"]] == hashlib.sha256(token.encode()).hexdigest()


# -- scopes and models on each endpoint family ----------------------------------------------
async def test_read_token_reads_but_cannot_infer(http, login, bodhi_app):
    token = (await mint(http, login, name="reader", scope="read"))["token"]
    assert (await http.get("bodhi/v1/models", headers=bearer(token))).status_code == 200
    assert (await http.get("bodhi/v1/models/fake-a", headers=bearer(token))).status_code \
        == 200
    for path, body in (("chat/completions", CHAT), ("completions", {"model": "fake-a",
                       "prompt": "x"}), ("embeddings", {"model": "fake-a", "input": "x"})):
        resp = await http.post(f"bodhi/v1/{path}", json=body, headers=bearer(token))
        err = assert_error_shape(resp, 403, "insufficient_scope")
        assert err["type"] == "permission_error"
    assert bodhi_app.supervisor.starts_total == 0


async def test_write_token_chats_and_embeds(http, login, api_url):
    token = (await mint(http, login, name="writer", scope="write"))["token"]
    resp = await http.post("bodhi/v1/chat/completions", json=CHAT, headers=bearer(token))
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["content"].startswith("fake reply")
    resp = await http.post("bodhi/v1/embeddings", json={"model": "fake-a", "input": "x"},
                           headers=bearer(token))
    assert resp.status_code == 200 and len(resp.json()["data"][0]["embedding"]) == 8

    client = openai.AsyncOpenAI(base_url=api_url, api_key=token, max_retries=0, timeout=30)
    try:
        reply = await client.chat.completions.create(**CHAT)
        assert reply.choices[0].message.content.startswith("fake reply")
        stream = await client.chat.completions.create(**CHAT, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream
                        if c.choices])
        assert text.startswith("fake reply")
    finally:
        await client.close()


async def test_model_restricted_token(http, login, bodhi_app):
    token = (await mint(http, login, name="only-a", scope="write",
                        models=["fake-a"]))["token"]
    listed = (await http.get("bodhi/v1/models", headers=bearer(token))).json()["data"]
    assert [m["id"] for m in listed] == ["fake-a"]
    assert_error_shape(await http.get("bodhi/v1/models/fake-b", headers=bearer(token)), 403,
                       "model_not_allowed", "model")
    resp = await http.post("bodhi/v1/chat/completions", json={**CHAT, "model": "fake-b"},
                           headers=bearer(token))
    assert_error_shape(resp, 403, "model_not_allowed", "model")
    assert bodhi_app.supervisor.starts_total == 0
    resp = await http.post("bodhi/v1/chat/completions", json=CHAT, headers=bearer(token))
    assert resp.status_code == 200
    assert [e.model.id for e in bodhi_app.supervisor.engines.values()] == ["fake-a"]


async def test_tokens_cannot_manage_tokens(http, login):
    created = await mint(http, login, name="admin-token", scope="admin")
    token = created["token"]
    url = f"bodhi/app/tokens/{created['id']}"
    for method, path, body in (("GET", "bodhi/app/tokens", None),
                               ("POST", "bodhi/app/tokens", {"name": "n", "scope": "read"}),
                               ("GET", url, None), ("PUT", url, {"status": "inactive"}),
                               ("DELETE", url, None)):
        resp = await http.request(method, path, json=body, headers=bearer(token))
        assert_error_shape(resp, 403, "login_required")
    assert (await http.get(url, headers=login)).json()["status"] == "active"


class AdminOnlyHandler(BodhiHandler):
    """A stand-in for an admin endpoint (settings, processes) reachable by tokens."""

    @web.authenticated
    @requires("admin")
    async def get(self):
        self.finish({"ok": True})


class TestRoles:
    @pytest.fixture
    def bodhi_config(self, fake_engine, smollm2_path, monkeypatch):
        monkeypatch.setattr(tokens_handlers, "default_handlers",
                            tokens_handlers.default_handlers
                            + [(r"bodhi/test/admin-only", AdminOnlyHandler)])
        return fake_aliases(fake_engine, smollm2_path)

    async def test_demoted_owner_loses_admin_at_once(self, http, login, bodhi_app):
        token = (await mint(http, login, name="adm", scope="admin"))["token"]
        assert (await http.get("bodhi/test/admin-only", headers=bearer(token))).status_code \
            == 200
        assert (await http.get("bodhi/app/tokens?user=*", headers=login)).status_code == 200

        bodhi_app.roles.user_roles = {server_owner(): "user"}
        resp = await http.get("bodhi/test/admin-only", headers=bearer(token))
        assert_error_shape(resp, 403, "insufficient_scope")
        assert (await http.get("bodhi/v1/models", headers=bearer(token))).status_code == 200
        assert_error_shape(await http.get("bodhi/app/tokens?user=*", headers=login), 403,
                           "insufficient_scope", "user")
        assert_error_shape(await http.get("bodhi/test/admin-only", headers=login), 403,
                           "insufficient_scope")

        bodhi_app.roles.user_roles = {}
        assert (await http.get("bodhi/test/admin-only", headers=bearer(token))).status_code \
            == 200


class TestPlainUser:
    @pytest.fixture
    def bodhi_config(self, fake_engine, smollm2_path):
        return {**fake_aliases(fake_engine, smollm2_path),
                "RolePolicy": {"owner": "someone-else", "default_role": "user"}}

    async def test_user_mints_up_to_write_and_sees_only_own_tokens(self, http, login,
                                                                    bodhi_app):
        assert (await mint(http, login, name="w", scope="write"))["scope"] == "write"
        resp = await http.post("bodhi/app/tokens", json={"name": "a", "scope": "admin"},
                               headers=login)
        assert_error_shape(resp, 403, "insufficient_scope", "scope")
        resp = await http.post("bodhi/app/tokens", json={"name": "a", "scopes": ["admin"]},
                               headers=login)
        assert_error_shape(resp, 403, "insufficient_scope", "scope")

        _, other = bodhi_app.tokens.create("someone-else", "theirs", "admin")
        for user in ("*", "someone-else"):
            resp = await http.get(f"bodhi/app/tokens?user={user}", headers=login)
            assert_error_shape(resp, 403, "insufficient_scope", "user")
        mine = (await http.get(f"bodhi/app/tokens?user={server_owner()}",
                               headers=login)).json()
        assert [t["name"] for t in mine["data"]] == ["w"]
        url = f"bodhi/app/tokens/{other.id}"
        for method, body in (("GET", None), ("PUT", {"status": "inactive"}),
                             ("DELETE", None)):
            resp = await http.request(method, url, json=body, headers=login)
            assert_error_shape(resp, 404, "token_not_found")
        assert bodhi_app.tokens.get(other.id).status == "active"


# -- XSRF -----------------------------------------------------------------------------------
async def test_xsrf_for_cookies_not_for_bearer_tokens(http, jupyter_token, login):
    resp = await http.get("login")
    assert resp.status_code == 200
    xsrf = http.cookies["_xsrf"]
    resp = await http.post("login", data={"password": jupyter_token, "_xsrf": xsrf})
    assert resp.status_code == 302
    body = {"name": "from-browser", "scope": "read"}

    # the browser session works for reads, but a write needs the XSRF token
    assert (await http.get("bodhi/app/tokens")).status_code == 200
    err = assert_error_shape(await http.post("bodhi/app/tokens", json=body), 403)
    assert "xsrf" in err["message"].lower()
    assert (await http.get("bodhi/app/tokens")).json()["total"] == 0
    resp = await http.post("bodhi/app/tokens", json=body, headers={"X-XSRFToken": xsrf})
    assert resp.status_code == 201
    token = resp.json()["token"]

    bare = httpx.AsyncClient(base_url=str(http.base_url), timeout=30)  # no cookies at all
    try:
        resp = await bare.post("bodhi/app/tokens", json=body, headers=login)
        assert resp.status_code == 201  # a Jupyter token is not cookie auth either
        write = (await mint(bare, login, name="w", scope="write"))["token"]
        resp = await bare.post("bodhi/v1/chat/completions", json=CHAT, headers=bearer(write))
        assert resp.status_code == 200
        # a bodhi token sent along with a browser's cookies still skips the cookie check
        resp = await http.post("bodhi/v1/chat/completions", json=CHAT, headers=bearer(write))
        assert resp.status_code == 200
        assert_error_shape(await http.post("bodhi/v1/chat/completions", json=CHAT,
                                           headers=bearer(token)), 403, "insufficient_scope")
    finally:
        await bare.aclose()


# -- rate limit -----------------------------------------------------------------------------
async def test_rate_limit_per_token_and_per_user(http, login, bodhi_app):
    a = (await mint(http, login, name="a", scope="read"))["token"]
    b = (await mint(http, login, name="b", scope="read"))["token"]
    for _ in range(10):  # off by default
        assert (await http.get("bodhi/v1/models", headers=bearer(a))).status_code == 200

    bodhi_app.limiter.per_token = 3  # the live object: no restart
    for _ in range(3):
        assert (await http.get("bodhi/v1/models", headers=bearer(a))).status_code == 200
    resp = await http.get("bodhi/v1/models", headers=bearer(a))
    err = assert_error_shape(resp, 429, "rate_limit_exceeded")
    assert err["type"] == "rate_limit_error"
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    # every bodhi endpoint counts, inference included, and is refused before any work
    resp = await http.post("bodhi/v1/chat/completions", json=CHAT, headers=bearer(a))
    assert_error_shape(resp, 429, "rate_limit_exceeded")
    assert bodhi_app.supervisor.starts_total == 0
    # the other token of the same user has its own count; logins are not per-token limited
    for _ in range(3):
        assert (await http.get("bodhi/v1/models", headers=bearer(b))).status_code == 200
    for _ in range(5):
        assert (await http.get("bodhi/app/tokens", headers=login)).status_code == 200

    bodhi_app.limiter.per_token = 0
    bodhi_app.limiter.per_user = 2  # tokens and logins of one user together
    assert (await http.get("bodhi/v1/models", headers=bearer(a))).status_code == 200
    assert (await http.get("bodhi/app/tokens", headers=login)).status_code == 200
    for headers in (bearer(b), login):
        resp = await http.get("bodhi/v1/models", headers=headers)
        assert_error_shape(resp, 429, "rate_limit_exceeded")
        assert int(resp.headers["Retry-After"]) >= 1

    bodhi_app.limiter.per_user = 0
    for _ in range(10):
        assert (await http.get("bodhi/v1/models", headers=bearer(b))).status_code == 200


class TestRateLimitConfig:
    @pytest.fixture
    def bodhi_config(self):
        return {"RateLimiter": {"per_user": 2}}

    async def test_configured_limit_applies_to_jupyter_logins(self, http, login, bodhi_app):
        assert (bodhi_app.limiter.per_user, bodhi_app.limiter.per_token) == (2, 0)
        for _ in range(2):
            assert (await http.get("bodhi/v1/models", headers=login)).status_code == 200
        resp = await http.post("bodhi/v1/chat/completions", json=CHAT, headers=login)
        assert_error_shape(resp, 429, "rate_limit_exceeded")
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        bodhi_app.limiter.per_user = 3  # raised at run time: room at once
        assert (await http.get("bodhi/v1/models", headers=login)).status_code == 200


# -- the secret never reaches a log ---------------------------------------------------------
async def test_secret_is_not_logged(http, login, bodhi_app, jp_serverapp):
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            if not record.name.startswith(("httpx", "httpcore")):  # the test's own client
                records.append(self.format(record))

    collector = Collect(level=logging.DEBUG)
    loggers = {logging.getLogger(), logging.getLogger("tornado.access"),
               logging.getLogger("tornado.application"), jp_serverapp.log, bodhi_app.log}
    levels = {lg: lg.level for lg in loggers}
    for lg in loggers:
        lg.addHandler(collector)
        lg.setLevel(logging.DEBUG)
    try:
        created = await mint(http, login, name="secret-keeper", scope="write")
        token = created["token"]
        await http.get("bodhi/v1/models", headers=bearer(token))
        await http.post("bodhi/v1/chat/completions", json=CHAT, headers=bearer(token))
        await http.put(f"bodhi/app/tokens/{created['id']}", json={"status": "inactive"},
                       headers=login)
        await http.get("bodhi/v1/models", headers=bearer(token))  # 401
        async with httpx.AsyncClient(base_url=str(http.base_url)) as bare:  # no cookies
            await bare.get(f"bodhi/v1/models?token={token}")  # Jupyter scrubs URL tokens
    finally:
        for lg, level in levels.items():
            lg.removeHandler(collector)
            lg.setLevel(level)
    text = "\n".join(records)
    assert "bodhi/app/tokens" in text and "bodhi/v1/models" in text  # we did capture them
    assert created["id"] in text  # creation is logged, by id
    secret = token[len("bodhi_"):]
    assert not any(secret[i:i + 12] in text for i in range(len(secret) - 11))
