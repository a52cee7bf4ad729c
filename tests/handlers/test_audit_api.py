"""The audit log over HTTP: every change leaves exactly one entry with who, how, from where
and what, and nothing secret; refused requests leave none; ``GET bodhi/app/audit`` filters,
pages and is for admins only.

These run in the per-user mode (bodhi inside a person's Jupyter server, in-process here);
the shared JupyterHub service's audit trail, with hub users as actors (via "hub"), is
tested against a real hub in tests/test_hub_service.py.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from bodhi_jupyter.auth.identity import server_owner

from ..conftest import DEMO_MODEL_ID
from ..hf_hub_stand_in import HubStandIn, tiny_gguf
from .anonymous import http  # noqa: F401  (fixture: a client without credentials)
from .test_errors import assert_error_shape

MODES = ["per-user"]
REPO, FILE = "someone/tiny-GGUF", "tiny-Q4_K_M.gguf"
KEY1, KEY2 = "sk-upstream-first-4f9a1c77", "sk-upstream-second-08d2e6b3"


@dataclass
class Caller:
    """Who makes the changes, and what the audit log should say of them."""

    headers: dict
    actor: str
    via: str
    address: str = "127.0.0.1"


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


@pytest.fixture
def hub():
    with HubStandIn() as h:
        yield h


def mode_config(mode: str) -> dict:
    if mode == "per-user":
        return {}
    raise NotImplementedError(mode)


@pytest.fixture
def bodhi_config(mode, fake_engine, smollm2_path, hub, tmp_path):
    target = str(smollm2_path)  # the fake ignores the file, but aliases must point at one
    return {
        "LlamaServerLauncher": {"llama_server_path": str(fake_engine), "threads": 0},
        "ModelRegistry": {"aliases": {"fake-a": {"model": target}}},
        "PullManager": {"endpoint": hub.url, "retry_wait": 0.01},
        "UpstreamRegistry": {"secret_key_file": str(tmp_path / "bodhi-secret.key")},
        **mode_config(mode),
    }


@pytest.fixture
def admin(mode, jupyter_token) -> Caller:
    if mode == "per-user":  # the server's owner with the server's Jupyter token
        return Caller({"Authorization": f"token {jupyter_token}"}, server_owner(), "jupyter")
    raise NotImplementedError(mode)


@pytest.fixture
def audit_lines(bodhi_app):
    """The ``bodhi-audit`` log lines written while the test runs."""
    lines: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = bodhi_app.audit.log
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


class Trail:
    """Reads the audit log after each step and checks what the step added."""

    def __init__(self, http, caller: Caller, lines: list[str]):
        self.http, self.caller, self.lines = http, caller, lines
        self.seen = 0
        self.logged = 0

    async def new_entries(self) -> list[dict]:
        resp = await self.http.get("bodhi/app/audit", params={"page_size": 200},
                                   headers=self.caller.headers)
        assert resp.status_code == 200, resp.text
        fresh = [e for e in resp.json()["data"] if e["id"] > self.seen]
        if fresh:
            self.seen = max(e["id"] for e in fresh)
        return fresh

    async def one(self, action: str, target: str | None, via: str | None = None) -> dict:
        fresh = await self.new_entries()
        assert [e["action"] for e in fresh] == [action], fresh
        (entry,) = fresh
        assert (entry["actor"], entry["via"], entry["address"], entry["target"]) == (
            self.caller.actor, via or self.caller.via, self.caller.address, target)
        assert entry["request_id"]
        logged = [line for line in self.lines[self.logged:] if line.startswith("bodhi-audit ")]
        self.logged = len(self.lines)
        assert len(logged) == 1, logged  # each entry is also one structured log line
        shown = {k: v for k, v in entry.items() if k != "id"}
        assert json.loads(logged[0][len("bodhi-audit "):]) == shown
        return entry

    async def none(self) -> None:
        assert await self.new_entries() == []


async def test_each_change_leaves_exactly_one_entry(http, bodhi_app, admin, hub,
                                                    audit_lines):
    trail = Trail(http, admin, audit_lines)
    h = admin.headers

    # -- tokens (and a token that then acts for its owner)
    resp = await http.post("bodhi/app/tokens", headers=h,
                           json={"name": "nb", "scope": "admin", "expires_in": 3600})
    assert resp.status_code == 201, resp.text
    tok = resp.json()
    secret = tok["token"]
    e = await trail.one("token.create", tok["id"])
    assert e["details"] == {"owner": admin.actor, "name": "nb", "scope": "admin",
                            "models": None, "expires_at": tok["expires_at"]}
    assert (await http.put(f"bodhi/app/tokens/{tok['id']}", json={"name": "nb2"},
                           headers=h)).status_code == 200
    e = await trail.one("token.update", tok["id"])
    assert e["details"]["changes"] == {"name": "nb2"}
    assert e["details"]["previous"] == {"name": "nb"}

    # -- settings, through the token this time
    bearer = {"Authorization": f"Bearer {secret}"}
    key = "EngineSupervisor.max_loaded"
    resp = await http.put(f"bodhi/app/settings/{key}", json={"value": 5}, headers=bearer)
    assert resp.status_code == 200, resp.text
    e = await trail.one("setting.update", key, via=f"bodhi_token:{tok['id']}")
    assert (e["details"]["value"], e["details"]["previous"]) == (5, 3)
    assert (await http.delete(f"bodhi/app/settings/{key}", headers=h)).status_code == 200
    e = await trail.one("setting.reset", key)
    assert (e["details"]["value"], e["details"]["previous"]) == (3, 5)

    # -- refused or invalid requests change nothing and leave nothing
    for method, path, body in (
            ("PUT", f"bodhi/app/settings/{key}", {"value": -5}),
            ("PUT", "bodhi/app/settings/EngineSupervisor.start_timeout", {"value": 5}),
            ("POST", "bodhi/app/tokens", {"name": "x", "scope": "read", "expire_in": 5}),
            ("PUT", "bodhi/app/tokens/nope", {"name": "x"}),
            ("DELETE", "bodhi/app/aliases/nope", None),
            ("POST", "bodhi/app/aliases", {"name": "bad", "model": DEMO_MODEL_ID, "colour": 1}),
            ("POST", "bodhi/app/upstreams", {"name": "r", "base_url": "ftp://x"}),
            ("POST", "bodhi/app/processes", {"model": "no-such-model"}),
            ("DELETE", "bodhi/app/processes/nope", None),
            ("POST", "bodhi/app/models/pulls/nope/retry", None)):
        resp = await http.request(method, path, json=body, headers=h)
        assert 400 <= resp.status_code < 500, (method, path, resp.text)
    await trail.none()

    # -- aliases
    resp = await http.post("bodhi/app/aliases", headers=h, json={
        "name": "quick", "model": DEMO_MODEL_ID, "request": {"max_tokens": 2}})
    assert resp.status_code == 201, resp.text
    e = await trail.one("alias.create", "quick")
    assert e["details"] == {"model": DEMO_MODEL_ID, "request": {"max_tokens": 2}}
    resp = await http.put("bodhi/app/aliases/quick", headers=h, json={
        "model": DEMO_MODEL_ID, "request": {"max_tokens": 3}})
    assert resp.status_code == 200, resp.text
    e = await trail.one("alias.update", "quick")
    assert e["details"] == {"changes": {"request": {"max_tokens": 3}},
                            "previous": {"request": {"max_tokens": 2}}}
    exported = await http.get("bodhi/app/aliases/export", headers=h)
    resp = await http.post("bodhi/app/aliases/import", content=exported.content, headers=h)
    assert resp.status_code == 200, resp.text
    e = await trail.one("alias.import", None)
    assert (e["details"]["created"], e["details"]["updated"]) == ([], ["quick"])
    assert (await http.delete("bodhi/app/aliases/quick", headers=h)).status_code == 204
    e = await trail.one("alias.delete", "quick")
    assert e["details"]["model"] == DEMO_MODEL_ID

    # -- upstreams: the API key only as "set" or "cleared"
    spec = {"name": "remote", "base_url": "http://127.0.0.1:9/v1"}
    resp = await http.post("bodhi/app/upstreams", json={**spec, "api_key": KEY1}, headers=h)
    assert resp.status_code == 201, resp.text
    e = await trail.one("upstream.create", "remote")
    assert e["details"] == {"base_url": spec["base_url"], "models": None, "prefix": None,
                            "api_key": "set"}
    resp = await http.put("bodhi/app/upstreams/remote", headers=h,
                          json={**spec, "api_key": KEY2, "models": ["m1"]})
    assert resp.status_code == 200, resp.text
    e = await trail.one("upstream.update", "remote")
    assert e["details"] == {"changes": {"models": ["m1"]}, "previous": {"models": None},
                            "api_key": "set"}
    resp = await http.put("bodhi/app/upstreams/remote", headers=h,
                          json={**spec, "api_key": None})
    assert resp.status_code == 200, resp.text
    e = await trail.one("upstream.update", "remote")
    assert e["details"] == {"changes": {"models": None}, "previous": {"models": ["m1"]},
                            "api_key": "cleared"}
    assert (await http.delete("bodhi/app/upstreams/remote", headers=h)).status_code == 204
    await trail.one("upstream.delete", "remote")

    # -- engines loaded and unloaded by hand
    resp = await http.post("bodhi/app/processes", json={"model": "fake-a"}, headers=h)
    assert resp.status_code == 201, resp.text
    proc = resp.json()
    e = await trail.one("engine.load", proc["id"])
    assert e["details"] == {"model": "fake-a", "embedding": False, "owner": proc["owner"],
                            "started": True}
    assert (await http.delete(f"bodhi/app/processes/{proc['id']}",
                              headers=h)).status_code == 204
    e = await trail.one("engine.unload", proc["id"])
    assert e["details"]["model"] == "fake-a"

    # -- pulls: start, cancel while it runs, retry
    hub.add(REPO, FILE, tiny_gguf(2_000_000), delay=0.02)
    resp = await http.post("bodhi/app/models/pulls", json={"repo": REPO, "filename": FILE},
                           headers=h)
    assert resp.status_code == 201, resp.text
    pull = resp.json()
    e = await trail.one("pull.start", pull["id"])
    assert e["details"] == {"repo": REPO, "filename": FILE, "revision": "main"}
    again = await http.post("bodhi/app/models/pulls", json={"repo": REPO, "filename": FILE},
                            headers=h)
    assert again.status_code == 200  # the same pull, running already: nothing changed
    await trail.none()
    assert (await http.delete(f"bodhi/app/models/pulls/{pull['id']}",
                              headers=h)).status_code == 204
    e = await trail.one("pull.cancel", pull["id"])
    assert e["details"]["state"] in ("queued", "running")
    resp = await http.post(f"bodhi/app/models/pulls/{pull['id']}/retry", headers=h)
    assert resp.status_code == 200, resp.text
    e = await trail.one("pull.retry", pull["id"])
    assert e["details"]["previous_state"] == "cancelled"

    # -- the token goes
    assert (await http.delete(f"bodhi/app/tokens/{tok['id']}", headers=h)).status_code == 204
    e = await trail.one("token.delete", tok["id"])
    assert e["details"] == {"owner": admin.actor, "name": "nb2", "scope": "admin"}

    # -- no secret in the table or the log
    from sqlalchemy import text
    with bodhi_app.database.engine.connect() as conn:
        dump = json.dumps([list(r) for r in conn.execute(text("SELECT * FROM audit_log"))],
                          default=str)
    everything = dump + "\n".join(audit_lines)
    assert "token.create" in dump and "upstream.update" in everything
    for value in (secret, secret[len("bodhi_"):][:16], KEY1, KEY2):
        assert value not in everything


async def test_ollama_load_and_unload_by_hand(http, bodhi_app, admin, audit_lines):
    trail = Trail(http, admin, audit_lines)
    resp = await http.post("bodhi/api/generate", json={"model": "fake-a"},
                           headers=admin.headers)
    assert resp.status_code == 200, resp.text
    (engine,) = bodhi_app.supervisor.engines.values()
    e = await trail.one("engine.load", engine.id)
    assert (e["details"]["api"], e["details"]["started"]) == ("ollama", True)
    resp = await http.post("bodhi/api/generate", json={"model": "fake-a", "keep_alive": 0},
                           headers=admin.headers)
    assert resp.status_code == 200, resp.text
    e = await trail.one("engine.unload", engine.id)
    assert e["details"]["api"] == "ollama"
    # inference is not a change: a chat leaves no entry
    resp = await http.post("bodhi/v1/chat/completions", headers=admin.headers, json={
        "model": "fake-a", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 200
    await trail.none()


async def test_listing_filters_and_pages(http, bodhi_app, admin):
    at = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
    for i, (action, actor) in enumerate([("token.create", "ann"), ("token.delete", "ann"),
                                         ("setting.update", "bob"),
                                         ("quota.refused", "ann")]):
        bodhi_app.audit.record(action, actor=actor, via="jupyter", address="10.1.2.3",
                               target=f"t{i}", at=at + timedelta(hours=i))

    async def listing(status=200, **params) -> dict:
        resp = await http.get("bodhi/app/audit", params=params, headers=admin.headers)
        assert resp.status_code == status, resp.text
        return resp.json()

    body = await listing()
    assert (body["total"], body["page"], body["page_size"]) == (4, 1, 50)
    assert [e["target"] for e in body["data"]] == ["t3", "t2", "t1", "t0"]  # newest first
    assert set(body["data"][0]) == {"id", "at", "action", "actor", "via", "address",
                                    "target", "details", "request_id"}
    assert [e["target"] for e in (await listing(user="ann"))["data"]] == ["t3", "t1", "t0"]
    assert [e["target"] for e in (await listing(action="token."))["data"]] == ["t1", "t0"]
    assert [e["target"] for e in (await listing(action="token.*"))["data"]] == ["t1", "t0"]
    assert [e["target"] for e in (await listing(action="quota.refused"))["data"]] == ["t3"]
    body = await listing(since="2025-03-01T13:00:00Z", until="2025-03-01T16:00:00+01:00")
    assert [e["target"] for e in body["data"]] == ["t2", "t1"]  # until is exclusive
    body = await listing(user="ann", action="token.", since="2025-03-01T12:30:00Z")
    assert [e["target"] for e in body["data"]] == ["t1"]
    body = await listing(page=2, page_size=3)
    assert (body["total"], [e["target"] for e in body["data"]]) == (4, ["t0"])
    assert_error_shape(await http.get("bodhi/app/audit", params={"since": "yesterday"},
                                      headers=admin.headers), 400, param="since")
    assert_error_shape(await http.get("bodhi/app/audit", params={"page_size": 0},
                                      headers=admin.headers), 400, param="page_size")


async def test_a_token_below_admin_may_not_read_the_log(http, bodhi_app, admin):
    token, _info = bodhi_app.tokens.create(admin.actor, "reader", "write")
    resp = await http.get("bodhi/app/audit", headers={"Authorization": f"Bearer {token}"})
    assert_error_shape(resp, 403, "insufficient_scope")
    assert (await http.get("bodhi/app/audit")).status_code in (401, 403)  # no credential


class TestPlainUser:
    """The Jupyter token's user is a plain user: their changes are recorded, but the log
    is for admins only."""

    @pytest.fixture
    def bodhi_config(self, bodhi_config):
        return {**bodhi_config, "RolePolicy": {"owner": "someone-else",
                                               "default_role": "user"}}

    async def test_changes_are_recorded_but_reading_needs_admin(self, http, bodhi_app,
                                                                admin, audit_lines):
        h = admin.headers
        me = (await http.get("bodhi/app/user", headers=h)).json()
        assert me["role"] == "user"
        assert_error_shape(await http.get("bodhi/app/audit", headers=h), 403,
                           "insufficient_scope")
        resp = await http.post("bodhi/app/tokens", json={"name": "mine", "scope": "read"},
                               headers=h)
        assert resp.status_code == 201, resp.text
        tok = resp.json()
        # a refusal for lack of the role leaves nothing
        resp = await http.put("bodhi/app/settings/EngineSupervisor.max_loaded",
                              json={"value": 1}, headers=h)
        assert_error_shape(resp, 403, "insufficient_scope")
        await bodhi_app.audit.flush()
        entries, total = bodhi_app.audit.query()
        assert total == 1
        (e,) = entries
        assert (e["action"], e["actor"], e["via"], e["address"], e["target"]) == (
            "token.create", me["name"], admin.via, "127.0.0.1", tok["id"])
        assert tok["token"] not in json.dumps(entries) + "\n".join(audit_lines)
        assert sum(line.startswith("bodhi-audit ") for line in audit_lines) == 1

