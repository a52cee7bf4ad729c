"""The app API under bodhi/app/: info, user, processes and usage; the fake engine for
shapes and rules, the real engine where the figures must be the engine's own."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from bodhi_jupyter import __version__
from bodhi_jupyter.auth.identity import server_owner

from ..conftest import DEMO_MODEL_ID, pid_alive, until
from .test_errors import assert_error_shape

PROCESS_KEYS = {"id", "model", "owner", "embedding", "pid", "port", "state", "started_at",
                "last_used_at", "in_flight", "memory_bytes", "log_path"}


@pytest.fixture
def bodhi_config(fake_engine, smollm2_path):
    target = str(smollm2_path)  # the fake ignores the file, but aliases must point at one
    return {
        "LlamaServerLauncher": {"llama_server_path": str(fake_engine), "threads": 0},
        "EngineSupervisor": {"capacity_timeout": 0.3},
        "ModelRegistry": {"aliases": {
            "fake-a": {"model": target},
            "fake-b": {"model": target, "server": {"ctx_size": 1024}},
            "broken": {"model": target, "server": {"extra_args": ["--fake-exit-on-start",
                                                                  "3"]}},
        }},
    }





def chat(model="fake-a", text="hi", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def assert_page(body: dict, total: int, page: int = 1, page_size: int = 50) -> list:
    assert set(body) == {"data", "total", "page", "page_size"}
    assert (body["total"], body["page"], body["page_size"]) == (total, page, page_size)
    return body["data"]


def parse_iso(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    assert value.tzinfo is not None
    return value


# -- info and user ---------------------------------------------------------------------------
async def test_info_and_user(http, bodhi_app, fake_engine):
    info = (await http.get("app/info")).json()
    assert set(info) == {"version", "engine", "status", "models_loaded", "uptime_s"}
    assert info["version"] == __version__ and info["status"] == "ok"
    assert info["engine"]["command"] == str(fake_engine)
    assert isinstance(info["engine"]["version"], str) and info["engine"]["version"]
    assert info["models_loaded"] == 0 and 0 <= info["uptime_s"] < 600
    await http.post("v1/chat/completions", json=chat())
    assert (await http.get("app/info")).json()["models_loaded"] == 1

    assert (await http.get("app/user")).json() == {
        "name": server_owner(), "role": "admin", "auth_method": "jupyter", "scope": "admin",
        "token": None}
    token, tinfo = bodhi_app.tokens.create(server_owner(), "nb", "read", models=["fake-a"])
    async with httpx.AsyncClient(base_url=str(http.base_url)) as c:
        me = (await c.get("app/user", headers={"Authorization": f"Bearer {token}"})).json()
    assert me == {"name": server_owner(), "role": "admin", "auth_method": "bodhi_token",
                  "scope": "read", "token": {"id": tinfo.id, "name": "nb",
                                             "models": ["fake-a"]}}


# -- processes -------------------------------------------------------------------------------
async def test_process_lifecycle(http, bodhi_app):
    assert assert_page((await http.get("app/processes")).json(), 0) == []
    resp = await http.post("app/processes", json={"model": "fake-a"})
    assert resp.status_code == 201, resp.text
    proc = resp.json()
    assert set(proc) == PROCESS_KEYS
    assert (proc["model"], proc["owner"], proc["embedding"], proc["state"],
            proc["in_flight"]) == ("fake-a", server_owner(), False, "ready", 0)
    assert proc["pid"] > 0 and proc["port"] > 0 and proc["memory_bytes"] > 0
    started, last_used = parse_iso(proc["started_at"]), parse_iso(proc["last_used_at"])
    now = datetime.now(timezone.utc)
    assert now - timedelta(seconds=30) < started <= last_used <= now + timedelta(seconds=1)

    (listed,) = assert_page((await http.get("app/processes")).json(), 1)
    assert listed["id"] == proc["id"] and listed["pid"] == proc["pid"]
    assert (await http.get(f"app/processes/{proc['id']}")).json()["pid"] == proc["pid"]

    log = (await http.get(f"app/processes/{proc['id']}/log")).json()
    assert log["id"] == proc["id"] and len(log["lines"]) > 1
    assert any("starting:" in line for line in log["lines"])
    two = (await http.get(f"app/processes/{proc['id']}/log", params={"lines": 2})).json()
    assert two["lines"] == log["lines"][-2:]

    # it idles under keep_alive like any engine: a chat uses the same process
    await http.post("v1/chat/completions", json=chat())
    (again,) = (await http.get("app/processes")).json()["data"]
    assert again["pid"] == proc["pid"] and parse_iso(again["last_used_at"]) > last_used

    resp = await http.delete(f"app/processes/{proc['id']}")
    assert resp.status_code == 204 and resp.content == b""
    assert assert_page((await http.get("app/processes")).json(), 0) == []
    await until(lambda: not pid_alive(proc["pid"]))
    assert_error_shape(await http.delete(f"app/processes/{proc['id']}"), 404,
                       "process_not_found")
    assert_error_shape(await http.get(f"app/processes/{proc['id']}/log"), 404,
                       "process_not_found")


async def test_process_errors(http, bodhi_app):
    assert_error_shape(await http.post("app/processes", content=b"{"), 400, "invalid_json")
    assert_error_shape(await http.post("app/processes", json={}), 400, param="model")
    assert_error_shape(await http.post("app/processes", json={"model": "fake-a",
                                                              "embedding": "yes"}),
                       400, param="embedding")
    assert_error_shape(await http.post("app/processes", json={"model": "nope"}), 404,
                       "model_not_found", "model")
    err = assert_error_shape(await http.post("app/processes", json={"model": "broken"}), 502,
                             "engine_unavailable")
    assert "failed to load model (fake)" in err["message"]
    assert bodhi_app.supervisor.engines == {}

    proc = (await http.post("app/processes", json={"model": "fake-a"})).json()
    for bad in ("0", "5001", "x"):
        assert_error_shape(await http.get(f"app/processes/{proc['id']}/log",
                                          params={"lines": bad}), 400, param="lines")
    # at the cap with the only engine busy: 503
    bodhi_app.supervisor.max_loaded = 1
    body = chat(text="[delay=0.2]", stream=True, max_tokens=5)
    async with http.stream("POST", "v1/chat/completions", json=body) as held:
        lines = held.aiter_lines()  # kept open: breaking out of it would hang up
        while not (await lines.__anext__()).startswith("data: "):
            pass
        resp = await http.post("app/processes", json={"model": "fake-b"})
        assert_error_shape(resp, 503, "capacity_exceeded")
        assert resp.headers["Retry-After"]
        assert [line async for line in lines if line.startswith("data: ")][-1] == \
            "data: [DONE]"


async def test_processes_are_paginated_and_admins_see_everyone(http, bodhi_app):
    sup = bodhi_app.supervisor
    sup.max_loaded = 0  # room for all four
    for body in ({"model": "fake-a"}, {"model": "fake-b"}, {"model": "fake-a",
                                                              "embedding": True}):
        assert (await http.post("app/processes", json=body)).status_code == 201
    model = bodhi_app.registry.resolve("fake-a")
    other = await sup.acquire("someone-else", model)  # another user's engine
    sup.release(other)

    everyone = assert_page((await http.get("app/processes")).json(), 4)
    assert {p["owner"] for p in everyone} == {server_owner(), "someone-else"}
    assert [p["embedding"] for p in everyone if p["owner"] == server_owner()].count(True) == 1
    first = assert_page((await http.get("app/processes", params={"page_size": 3})).json(),
                        4, 1, 3)
    second = assert_page((await http.get("app/processes", params={"page": 2,
                                                                   "page_size": 3})).json(),
                         4, 2, 3)
    assert len(first) == 3 and len(second) == 1
    assert {p["id"] for p in first + second} == {p["id"] for p in everyone}
    assert_page((await http.get("app/processes", params={"page": 9})).json(), 4, 9)
    for bad in ({"page": 0}, {"page_size": 0}, {"page_size": 201}, {"page": "one"}):
        (param,) = bad
        assert_error_shape(await http.get("app/processes", params=bad), 400, param=param)

    (theirs,) = assert_page((await http.get("app/processes",
                                            params={"user": "someone-else"})).json(), 1)
    assert theirs["id"] == other.id
    assert (await http.get(f"app/processes/{other.id}/log")).status_code == 200
    assert (await http.delete(f"app/processes/{other.id}")).status_code == 204
    assert other.id not in sup.engines


class TestPlainUser:
    """The Jupyter token's user is a plain user here: only their own processes and usage."""

    @pytest.fixture
    def bodhi_config(self, bodhi_config):
        return {**bodhi_config,
                "RolePolicy": {"owner": "someone-else", "default_role": "user"}}

    async def test_isolation(self, http, bodhi_app):
        me = (await http.get("app/user")).json()
        assert (me["role"], me["scope"]) == ("user", "write")
        sup = bodhi_app.supervisor
        other = await sup.acquire("someone-else", bodhi_app.registry.resolve("fake-a"))
        sup.release(other)

        assert assert_page((await http.get("app/processes")).json(), 0) == []
        mine = (await http.post("app/processes", json={"model": "fake-a"})).json()
        assert mine["owner"] == me["name"] and mine["id"] != other.id
        (listed,) = (await http.get("app/processes")).json()["data"]
        assert listed["id"] == mine["id"]
        assert (await http.get("app/processes", params={"user": me["name"]})).json()[
            "total"] == 1
        for path in (f"app/processes/{other.id}", f"app/processes/{other.id}/log"):
            assert_error_shape(await http.get(path), 404, "process_not_found")
        assert_error_shape(await http.delete(f"app/processes/{other.id}"), 404,
                           "process_not_found")
        assert other.id in sup.engines
        for path in ("app/processes", "app/usage"):
            for who in ("*", "someone-else"):
                assert_error_shape(await http.get(path, params={"user": who}), 403,
                                   "insufficient_scope", "user")
        assert_error_shape(await http.get("app/settings"), 403, "insufficient_scope")
        assert (await http.delete(f"app/processes/{mine['id']}")).status_code == 204


# -- usage -----------------------------------------------------------------------------------
async def test_usage_is_recorded_and_aggregated(http, bodhi_app):
    owner = server_owner()
    token, tinfo = bodhi_app.tokens.create(owner, "script", "write")
    for _ in range(2):
        assert (await http.post("v1/chat/completions", json=chat(max_tokens=3))
                ).status_code == 200
    async with httpx.AsyncClient(base_url=str(http.base_url), timeout=30) as c:
        resp = await c.post("v1/chat/completions", json=chat("fake-b", "one two", stream=True,
                                                             max_tokens=4),
                            headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200
    assert (await http.post("v1/chat/completions", json=chat(text="[status=503]"))
            ).status_code == 502
    assert (await http.post("v1/embeddings", json={"model": "fake-a", "input": "a b c"})
            ).status_code == 200
    assert (await http.post("v1/chat/completions", json=chat("nope"))).status_code == 404
    # another user's record, straight through the recorder
    from bodhi_jupyter.usage import UsageEntry
    bodhi_app.usage.record(UsageEntry("someone-else", None, "fake-a", "chat", False, 200,
                                      5.0, 1, 1))

    by_model = assert_page((await http.get("app/usage")).json(), 2)
    assert by_model[0]["model"] == "fake-a" and by_model[1]["model"] == "fake-b"
    a, b = by_model
    # fake-a: 2 chats (1 prompt + 3 completion tokens each), 1 failure, 1 embeddings (3)
    assert (a["requests"], a["prompt_tokens"], a["completion_tokens"], a["errors"]) == \
        (4, 5, 6, 1)
    # fake-b streamed without include_usage: the fake sends no counts, so none are known
    assert (b["requests"], b["errors"]) == (1, 0)
    assert a["avg_duration_ms"] > 0

    by_token = (await http.get("app/usage", params={"group_by": "token"})).json()["data"]
    assert [(r["token_id"], r["token_name"], r["requests"]) for r in by_token] == [
        (None, None, 4), (tinfo.id, "script", 1)]
    today = datetime.now(timezone.utc).date().isoformat()
    by_day = (await http.get("app/usage", params={"group_by": "day,model"})).json()["data"]
    assert [(r["day"], r["model"], r["requests"]) for r in by_day] == [
        (today, "fake-a", 4), (today, "fake-b", 1)]
    by_user = (await http.get("app/usage", params={"group_by": "user", "user": "*"})).json()
    assert [(r["user"], r["requests"]) for r in by_user["data"]] == sorted(
        [(owner, 5), ("someone-else", 1)])
    theirs = (await http.get("app/usage", params={"user": "someone-else"})).json()["data"]
    assert [(r["model"], r["requests"]) for r in theirs] == [("fake-a", 1)]

    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    assert (await http.get("app/usage", params={"since": tomorrow})).json()["total"] == 0
    assert (await http.get("app/usage", params={"until": tomorrow})).json()["total"] == 2
    paged = (await http.get("app/usage", params={"page": 2, "page_size": 1})).json()
    assert assert_page(paged, 2, 2, 1)[0]["model"] == "fake-b"
    assert_error_shape(await http.get("app/usage", params={"group_by": "week"}), 400,
                       param="group_by")
    assert_error_shape(await http.get("app/usage", params={"since": "last week"}), 400,
                       param="since")


# -- with the real engine --------------------------------------------------------------------
class TestRealEngine:
    @pytest.fixture
    def bodhi_config(self):
        return {}

    async def test_usage_figures_are_the_engines_own(self, http, bodhi_app):
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        body = {"model": DEMO_MODEL_ID, "messages": messages, "max_tokens": 8,
                "temperature": 0}
        reply = (await http.post("v1/chat/completions", json=body)).json()
        expected = [(reply["usage"]["prompt_tokens"], reply["usage"]["completion_tokens"])]

        final = None
        async with http.stream("POST", "v1/chat/completions",
                               json={**body, "stream": True,
                                     "stream_options": {"include_usage": True}}) as resp:
            async for line in resp.aiter_lines():
                if line.startswith("data: {"):
                    final = json.loads(line[6:]).get("usage") or final
        expected.append((final["prompt_tokens"], final["completion_tokens"]))

        timings = None  # without include_usage llama-server still sends its timings
        async with http.stream("POST", "v1/chat/completions",
                               json={**body, "stream": True}) as resp:
            async for line in resp.aiter_lines():
                if line.startswith("data: {"):
                    timings = json.loads(line[6:]).get("timings") or timings
        expected.append((timings["cache_n"] + timings["prompt_n"], timings["predicted_n"]))

        await bodhi_app.usage.flush()
        from sqlalchemy import select

        from bodhi_jupyter.store.tables import usage_records
        with bodhi_app.database.read() as conn:
            rows = conn.execute(select(usage_records).order_by(usage_records.c.id)).all()
        assert [(r.prompt_tokens, r.completion_tokens) for r in rows] == expected
        assert all(p > 0 and c > 0 for p, c in expected)
        assert [(r.model, r.endpoint, r.stream, r.status, r.user) for r in rows] == [
            (DEMO_MODEL_ID, "chat", stream, 200, server_owner())
            for stream in (False, True, True)]

        (agg,) = (await http.get("app/usage")).json()["data"]
        assert agg["requests"] == 3
        assert agg["prompt_tokens"] == sum(p for p, _ in expected)
        assert agg["completion_tokens"] == sum(c for _, c in expected)

    async def test_real_process_lifecycle(self, http, bodhi_app):
        proc = (await http.post("app/processes", json={"model": DEMO_MODEL_ID})).json()
        assert proc["state"] == "ready" and proc["memory_bytes"] > 50_000_000  # weights
        log = (await http.get(f"app/processes/{proc['id']}/log",
                              params={"lines": 5000})).json()["lines"]
        assert len(log) > 10
        info = (await http.get("app/info")).json()
        assert info["models_loaded"] == 1 and info["engine"]["version"]
        assert (await http.delete(f"app/processes/{proc['id']}")).status_code == 204
        await until(lambda: not pid_alive(proc["pid"]), timeout=15)
        assert (await http.get("app/processes")).json()["total"] == 0
