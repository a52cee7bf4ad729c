"""Quotas, shared engines and fair admission over HTTP, with the fake engine: users are
bodhi tokens of other users in hub groups (their groups travel with the token)."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from bodhi_jupyter.auth.identity import server_owner
from bodhi_jupyter.auth.quotas import QuotaPolicy
from bodhi_jupyter.engine.supervisor import SHARED

from ..conftest import until
from .test_errors import assert_error_shape
from .test_tokens_api import bearer, fake_aliases


def chat(text="hi", model="fake-a", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


class Audit:
    def __init__(self):
        self.records = []

    def record(self, action, **fields):
        self.records.append((action, fields))


@pytest.fixture
def quotas() -> dict:
    return {}


@pytest.fixture
def supervisor_config() -> dict:
    return {}


@pytest.fixture
def bodhi_config(fake_engine, smollm2_path, quotas, supervisor_config):
    config = fake_aliases(fake_engine, smollm2_path)
    aliases = config["ModelRegistry"]["aliases"]
    aliases["fake-one"] = {"model": str(smollm2_path), "server": {"parallel": 1}}
    config["QuotaPolicy"] = {"group_quotas": quotas}
    config["EngineSupervisor"] = supervisor_config
    return config


@pytest.fixture
def users(bodhi_app, api_url, jp_asyncio_loop):
    """httpx clients of alice (group students) and bob (group staff) for bodhi/v1/."""
    clients = {}
    for name, group in (("alice", "students"), ("bob", "staff")):
        token, _ = bodhi_app.tokens.create(name, f"{name}'s", "write", groups=[group])
        clients[name] = httpx.AsyncClient(base_url=api_url + "/", headers=bearer(token),
                                          timeout=30)
    yield clients
    for c in clients.values():
        jp_asyncio_loop.run_until_complete(c.aclose())


@pytest.fixture
def audit(bodhi_app, monkeypatch):
    log = Audit()
    monkeypatch.setattr(bodhi_app, "audit", log, raising=False)
    return log


@contextlib.asynccontextmanager
async def open_stream(client, body):
    """A streamed chat request whose headers have arrived (it holds its slot)."""
    async with client.stream("POST", "chat/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200
        yield r


def assert_quota(resp, quota: str) -> dict:
    err = assert_error_shape(resp, 429, f"quota_{quota}")
    assert int(resp.headers["Retry-After"]) >= 1
    return err


# -- each quota --------------------------------------------------------------------------
@pytest.mark.parametrize("quotas", [{"students": {"concurrent": 1}}])
async def test_concurrent_requests(users, bodhi_app, audit, http):
    alice, bob = users["alice"], users["bob"]
    async with open_stream(alice, chat("[delay=0.2] [chunks=50]")):
        err = assert_quota(await alice.post("chat/completions", json=chat()), "concurrent")
        assert "at most 1 concurrent requests" in err["message"]
        # the Ollama route takes the same path, with Ollama's error shape
        resp = await alice.post("../api/chat", json={**chat(), "stream": False})
        assert resp.status_code == 429 and "concurrent" in resp.json()["error"]
        assert (await bob.post("chat/completions", json=chat())).status_code == 200
    assert (await alice.post("chat/completions", json=chat())).status_code == 200
    assert [a for a, _ in audit.records] == ["quota.refused"] * 2
    fields = audit.records[0][1]
    assert fields["actor"] == "alice" and fields["via"].startswith("bodhi_token:")
    assert fields["details"] == {"quota": "concurrent", "limit": 1} and fields["address"]
    # refusals are not usage: alice has her stream and one request, bob one
    await bodhi_app.usage.flush()
    rows = (await http.get("app/usage", params={"group_by": "user", "user": "*"})).json()
    assert {r["user"]: r["requests"] for r in rows["data"]} == {"alice": 2, "bob": 1}


@pytest.mark.parametrize("quotas", [{"students": {"requests_per_minute": 2}}])
async def test_requests_per_minute(users):
    alice = users["alice"]
    for _ in range(2):
        assert (await alice.post("chat/completions", json=chat())).status_code == 200
    resp = await alice.post("completions", json={"model": "fake-a", "prompt": "x"})
    assert_quota(resp, "requests_per_minute")
    assert 55 <= int(resp.headers["Retry-After"]) <= 60
    assert (await users["bob"].post("chat/completions", json=chat())).status_code == 200


@pytest.mark.parametrize("quotas", [{"students": {"tokens_per_day": 20}}])
async def test_tokens_per_day_also_after_a_restart(users, bodhi_app):
    alice = users["alice"]
    spent = 0
    while spent < 20:  # each reply: its prompt tokens + 5 completion tokens
        resp = await alice.post("chat/completions", json=chat())
        assert resp.status_code == 200
        usage = resp.json()["usage"]
        spent += usage["prompt_tokens"] + usage["completion_tokens"]
    err = assert_quota(await alice.post("chat/completions", json=chat()), "tokens_per_day")
    assert f"{spent} used today" in err["message"]
    assert int((await alice.post("chat/completions", json=chat())).headers["Retry-After"]) \
        <= 86400
    # a fresh policy, as after a restart: today's tokens come back from the database
    fresh = QuotaPolicy(bodhi_app.limiter, bodhi_app.usage, bodhi_app.database,
                        group_quotas={"students": {"tokens_per_day": 20}})
    bodhi_app.quotas = fresh
    assert_quota(await alice.post("chat/completions", json=chat()), "tokens_per_day")
    assert await fresh.tokens_today("alice") == spent
    assert (await users["bob"].post("chat/completions", json=chat())).status_code == 200


@pytest.mark.parametrize("quotas", [{"students": {"loaded_models": 1}}])
async def test_loaded_models_per_user(users, bodhi_app):
    alice, sup = users["alice"], bodhi_app.supervisor
    assert (await alice.post("chat/completions", json=chat(model="fake-a"))).status_code == 200
    # her idle engine makes room for the next model
    assert (await alice.post("chat/completions", json=chat(model="fake-b"))).status_code == 200
    assert [e.model.id for e in sup.engines_of("alice")] == ["fake-b"]
    async with open_stream(alice, chat("[delay=0.2] [chunks=50]", model="fake-b")):
        resp = await alice.post("chat/completions", json=chat(model="fake-a"))
        assert_quota(resp, "loaded_models")
        # the model she has loaded still answers
        assert (await alice.post("chat/completions",
                                 json=chat(model="fake-b"))).status_code == 200
    assert sup.starts_total == 2


@pytest.mark.parametrize("quotas", [{"students": {"loaded_models": 1}}])
@pytest.mark.parametrize("supervisor_config", [{"share_engines": True}])
async def test_loaded_models_with_shared_engines_counts_models_in_use(users, bodhi_app):
    alice = users["alice"]
    async with open_stream(alice, chat("[delay=0.2] [chunks=50]", model="fake-a")):
        assert_quota(await alice.post("chat/completions", json=chat(model="fake-b")),
                     "loaded_models")
        assert (await users["bob"].post("chat/completions",
                                        json=chat(model="fake-b"))).status_code == 200
    assert (await alice.post("chat/completions", json=chat(model="fake-b"))).status_code == 200


# -- shared engines ----------------------------------------------------------------------
@pytest.mark.parametrize("supervisor_config", [{"share_engines": True}])
async def test_two_users_share_one_engine_usage_stays_per_user(users, bodhi_app, http):
    alice, bob = users["alice"], users["bob"]
    for c in (alice, bob, alice):
        assert (await c.post("chat/completions", json=chat())).status_code == 200
    sup = bodhi_app.supervisor
    assert sup.starts_total == 1
    (engine,) = sup.engines.values()
    assert engine.owner == SHARED
    for c in (alice, bob):
        listing = (await c.get("../app/processes")).json()
        assert [p["owner"] for p in listing["data"]] == [SHARED]
        assert (await c.get(f"../app/processes/{engine.id}")).status_code == 200
    resp = await bob.delete(f"../app/processes/{engine.id}")
    assert_error_shape(resp, 403, "insufficient_scope")
    ps = (await alice.get("../api/ps")).json()["models"]
    assert [m["name"] for m in ps] == ["fake-a"]
    await bodhi_app.usage.flush()
    rows = (await http.get("app/usage", params={"group_by": "user", "user": "*"})).json()
    assert {r["user"]: r["requests"] for r in rows["data"]} == {"alice": 2, "bob": 1}
    # the server's owner is an admin: may unload it
    assert (await http.delete(f"app/processes/{engine.id}")).status_code == 204
    assert sup.engines == {}


async def test_per_user_engines_stay_private(users, bodhi_app):
    alice, bob = users["alice"], users["bob"]
    for c in (alice, bob):
        assert (await c.post("chat/completions", json=chat())).status_code == 200
    assert bodhi_app.supervisor.starts_total == 2
    owners = [p["owner"] for p in (await alice.get("../app/processes")).json()["data"]]
    assert owners == ["alice"]
    assert server_owner() not in owners


# -- fair admission ----------------------------------------------------------------------
@pytest.mark.parametrize("supervisor_config", [{"share_engines": True}])
async def test_a_single_request_is_not_starved_by_another_users_streams(users, bodhi_app):
    alice, bob = users["alice"], users["bob"]
    sup = bodhi_app.supervisor
    model = bodhi_app.registry.resolve("fake-one")  # one slot
    slow = chat("[delay=0.05] [chunks=10]", model="fake-one")
    done: list[str] = []

    async def run(name, client, body):
        resp = await client.post("chat/completions", json=body)
        assert resp.status_code == 200, resp.text
        done.append(name)

    alice_tasks = [asyncio.ensure_future(run(f"a{i}", alice, slow)) for i in range(4)]
    await until(lambda: sup.gate("alice", model) is not None
                and sup.gate("alice", model).waiting == 3)
    bobs = asyncio.ensure_future(run("b", bob, chat("[chunks=1]", model="fake-one")))
    await until(lambda: sup.gate("bob", model).waiting == 4)
    (engine,) = sup.engines.values()
    assert engine.in_flight == 1
    await asyncio.gather(*alice_tasks, bobs)
    assert done[1] == "b"  # right after the stream that held the slot, before alice's queue


@pytest.mark.parametrize("supervisor_config", [{"share_engines": True}])
async def test_a_client_that_leaves_while_queued_frees_its_place(users, bodhi_app, api_url):
    alice = users["alice"]
    sup = bodhi_app.supervisor
    model = bodhi_app.registry.resolve("fake-one")
    async with open_stream(alice, chat("[delay=0.05] [chunks=100]", model="fake-one")):
        queued = asyncio.ensure_future(
            users["bob"].post("chat/completions", json=chat(model="fake-one")))
        await until(lambda: sup.gate("bob", model).waiting == 1)
        queued.cancel()  # the client hangs up
        await until(lambda: sup.gate("bob", model).waiting == 0)
    await bodhi_app.usage.flush()
    await until(lambda: sup.gate("alice", model) is None)
    from sqlalchemy import select

    from bodhi_jupyter.store.tables import usage_records
    with bodhi_app.database.read() as conn:
        statuses = {(r.user, r.status) for r in conn.execute(select(usage_records))}
    assert ("bob", 499) in statuses
