"""bodhi as a hub-wide shared service (bodhi_jupyter/service.py), started by a real
JupyterHub, with its database in a real PostgreSQL server.

One hub for the module. Users: alice (group staff) and bob (staff, ml) may use the service
(group bodhi-users, whose hub role grants access:services!service=bodhi); carol may not;
dana is in the group bodhi-admins (RolePolicy.group_roles: admin); erin holds the custom
hub scope custom:bodhi:admin; boss is a hub admin. alice's own server is set to send its
inference to the service (BodhiApp.service_url).
"""

from __future__ import annotations

import json
import re
import sys
from urllib.parse import urljoin

import httpx
import openai
import pytest

from bodhi_jupyter.engine.supervisor import EngineSupervisor

from .hub import fake_engine, start_hub, stop_hub
from .live_server import free_port

pytestmark = pytest.mark.timeout(180)

ALIAS = "fake-shared"
CHAT = {"model": ALIAS, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
SERVICE = "bodhi"
USERS = ["alice", "bob", "carol", "dana", "erin", "boss"]
SHARED = "share_engines" in EngineSupervisor.class_trait_names()
STAFF_CONCURRENT = 3


def write_jupyter_config(config_dir, settings: dict,
                         name: str = "jupyter_server_config") -> str:
    config_dir.mkdir()
    (config_dir / f"{name}.json").write_text(json.dumps(settings))
    return str(config_dir)


@pytest.fixture(scope="module")
def hub(tmp_path_factory, postgres_cluster):
    tmp = tmp_path_factory.mktemp("hubsvc")
    wrapper, model = fake_engine(tmp)
    service_port = free_port()
    service_root = f"http://127.0.0.1:{service_port}/services/{SERVICE}/"
    service_config = write_jupyter_config(tmp / "service-config", {
        "Database": {"url": postgres_cluster.create_database()},
        "LlamaServerLauncher": {"llama_server_path": str(wrapper), "threads": 0},
        "ModelRegistry": {"aliases": {ALIAS: {"model": str(model)}},
                          "default_ctx_size": 1024, "default_parallel": 2},
        "EngineSupervisor": {"stop_grace": 2.0},
        "RolePolicy": {"group_roles": {"bodhi-admins": "admin"}},
        "UpstreamRegistry": {"secret_key_file": str(tmp / "service-secret.key")},
        # the load test's quota: staff (alice, bob) may have 3 requests at once
        "QuotaPolicy": {"group_quotas": {"staff": {"concurrent": STAFF_CONCURRENT}}},
    }, name="bodhi_service_config")  # the service's own config file
    user_config = write_jupyter_config(tmp / "user-config", {
        "ServerApp": {"allow_unauthenticated_access": False},
        "BodhiApp": {"service_url": service_root},
    })
    hub = start_hub(
        tmp,
        singleuser_env={"JUPYTER_CONFIG_DIR": user_config},
        allowed_users=USERS,
        groups={"staff": {"users": ["alice", "bob"]}, "ml": {"users": ["bob"]},
                "bodhi-users": {"users": ["alice", "bob", "dana", "erin"]},
                "bodhi-admins": {"users": ["dana"]}},
        roles=[{"name": "bodhi-users", "scopes": [f"access:services!service={SERVICE}"],
                "groups": ["bodhi-users"]},
               {"name": "bodhi-admin", "scopes": ["custom:bodhi:admin"], "users": ["erin"]},
               {"name": "alice-server", "scopes": ["access:servers!user=alice"],
                "users": ["bob"]}],
        custom_scopes={"custom:bodhi:admin": {"description": "Administer the bodhi service"}},
        services=[{
            "name": SERVICE, "url": f"http://127.0.0.1:{service_port}",
            "command": [sys.executable, "-m", "bodhi_jupyter.service", "--allow-root"],
            # its data (engine logs, converted models) and runtime files stay in tmp
            "environment": {"JUPYTER_CONFIG_DIR": service_config,
                            "JUPYTER_DATA_DIR": str(tmp / "service-data"),
                            "JUPYTER_RUNTIME_DIR": str(tmp / "service-runtime")},
            "oauth_no_confirm": True,
            # browser logins carry the admin scope only when the service may ask for it
            "oauth_client_allowed_scopes": ["custom:bodhi:admin"],
        }],
        config={"Authenticator": {"admin_users": ["boss"]},
                # a user server's own token may call the service as its owner
                "Spawner": {"server_token_scopes": [
                    "users:activity!user", "access:servers!server",
                    f"access:services!service={SERVICE}"]}},
    )
    try:
        for name in USERS:
            hub.ensure_user(name)
        hub.tokens = {name: hub.new_token(name) for name in USERS}
        hub.service = f"{hub.url}/services/{SERVICE}/"
        wait_for_service(hub)
        yield hub
    finally:
        stop_hub(hub)


def wait_for_service(hub, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            r = on_service(hub, "GET", "v1/models", "alice")
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the service did not answer within {timeout} s:\n"
                                 f"{hub.log()[-4000:]}")
        time.sleep(0.3)


def on_service(hub, method: str, path: str, who: str, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{hub.url}/services/{SERVICE}/bodhi/{path}", timeout=60,
                         headers={"Authorization": f"token {hub.tokens[who]}"}, **kwargs)


def test_hub_users_chat_with_the_service_on_their_hub_tokens(hub):
    for who in ("alice", "bob"):
        llm = openai.OpenAI(base_url=f"{hub.service}bodhi/v1", api_key=hub.tokens[who],
                            max_retries=0, timeout=60)  # as the SDK sends it: Bearer
        reply = llm.chat.completions.create(**CHAT)
        assert reply.choices[0].message.content.startswith("fake reply"), reply
        r = on_service(hub, "GET", "app/user", who)
        assert r.status_code == 200, r.text
        me = r.json()
        assert (me["name"], me["role"], me["auth_method"]) == (who, "user", "jupyter")

    r = on_service(hub, "GET", "app/processes", "dana", params={"user": "*"})
    assert r.status_code == 200, r.text
    owners = sorted(p["owner"] for p in r.json()["data"] if p["model"] == ALIAS)
    # one engine for everyone where engines are shared, else one per user
    assert owners == (["*"] if SHARED else ["alice", "bob"]), owners


@pytest.mark.parametrize("path", ["v1/models", "app/user"])
def test_a_hub_user_without_access_to_the_service_gets_403(hub, path):
    r = on_service(hub, "GET", path, "carol")
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "forbidden", r.text
    r = on_service(hub, "POST", "v1/chat/completions", "carol", json=CHAT)
    assert r.status_code == 403, r.text


def test_the_service_offers_nothing_of_jupyter_but_bodhi(hub):
    for path in ("api/contents", "api/kernels", "api/sessions", "files/jupyterhub.log",
                 "api/terminals"):
        r = httpx.get(hub.service + path, timeout=30,
                      headers={"Authorization": f"token {hub.tokens['alice']}"})
        assert r.status_code == 404, (path, r.status_code)


@pytest.mark.parametrize("who,expected", [("boss", 200), ("dana", 200), ("erin", 200),
                                          ("alice", 403)])
def test_hub_admins_the_admin_group_and_the_custom_scope_give_admin(hub, who, expected):
    r = on_service(hub, "GET", "app/settings", who)
    assert r.status_code == expected, (who, r.text)
    r = on_service(hub, "GET", "app/user", who)
    assert r.json()["role"] == ("admin" if expected == 200 else "user"), r.text


def usage(hub, group_by: str) -> list[dict]:
    r = on_service(hub, "GET", "app/usage", "dana", params={"group_by": group_by, "user": "*"})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_usage_is_reported_per_user_and_per_hub_group(hub):
    before = {r["user"]: r["requests"] for r in usage(hub, "user")}
    groups_before = {r["group"]: r["requests"] for r in usage(hub, "group")}
    for who, n in (("alice", 1), ("bob", 2)):
        for _ in range(n):
            r = on_service(hub, "POST", "v1/chat/completions", who, json=CHAT)
            assert r.status_code == 200, r.text
    after = {r["user"]: r["requests"] for r in usage(hub, "user")}
    assert after["alice"] - before.get("alice", 0) == 1, after
    assert after["bob"] - before.get("bob", 0) == 2, after
    groups = {r["group"]: r["requests"] for r in usage(hub, "group")}
    grew = {g: groups[g] - groups_before.get(g, 0) for g in groups}
    # bob is in staff and ml: his requests count in both
    assert (grew["staff"], grew["ml"], grew["bodhi-users"]) == (3, 2, 3), grew

    # a user sees only their own usage, by their own groups
    r = on_service(hub, "GET", "app/usage", "alice", params={"group_by": "group"})
    assert r.status_code == 200, r.text
    assert {row["group"] for row in r.json()["data"]} == {"staff", "bodhi-users"}
    r = on_service(hub, "GET", "app/usage", "alice", params={"user": "*"})
    assert r.status_code == 403, r.text


def test_a_browser_signs_in_through_the_hub_oauth(hub):
    with httpx.Client(follow_redirects=True, timeout=60) as browser:
        page = browser.get(f"{hub.service}bodhi/login")
        assert page.status_code == 200 and "/hub/login" in str(page.url), page.url
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        form = {"username": "erin", "password": "anything"}
        if xsrf:
            form["_xsrf"] = xsrf.group(1)
        action = re.search(r'<form[^>]*action="([^"]+)"', page.text).group(1)
        r = browser.post(urljoin(str(page.url), action.replace("&amp;", "&")), data=form)
        assert r.status_code == 200, (r.url, r.text[:500])
        assert str(r.url).endswith(f"/services/{SERVICE}/bodhi/app/user"), r.url
        me = r.json()
        # the custom scope reaches a browser login: oauth_client_allowed_scopes lists it
        assert (me["name"], me["role"], me["auth_method"]) == ("erin", "admin", "jupyter")
        # the service's own cookie now signs API requests in
        r = browser.get(f"{hub.service}bodhi/v1/models")
        assert r.status_code == 200 and ALIAS in [m["id"] for m in r.json()["data"]], r.text


async def test_a_user_server_sends_client_magic_and_panel_chats_to_the_service_as_its_user(hub):
    from .kernel_exec import KernelChannels, start_session

    hub.start_server("alice")
    base, token = f"{hub.url}/user/alice/", hub.tokens["alice"]
    before = {r["user"]: r["requests"] for r in usage(hub, "user")}

    r = httpx.get(base + "bodhi/v1/models", timeout=60,
                  headers={"Authorization": f"token {token}"})
    assert r.status_code == 200, r.text
    service_models = on_service(hub, "GET", "v1/models", "alice").json()["data"]
    # the service's list under the same names, nothing of this server's own
    assert [m["id"] for m in r.json()["data"]] == [m["id"] for m in service_models]
    assert ALIAS in [m["id"] for m in service_models]

    session_id, kernel_id = start_session(base, token, "shared.ipynb")
    channels = await KernelChannels.connect(base, token, kernel_id)
    try:
        out = (await channels.execute(f"""
import bodhi_jupyter
llm = bodhi_jupyter.client(max_retries=0, timeout=60)
print(llm.chat.completions.create(**{CHAT!r}).choices[0].message.content)
""")).check().stdout
        # the magics work the same in a forwarding server
        (await channels.execute("%load_ext bodhi_jupyter")).check()
        magic = (await channels.execute(f"%%bodhi -m {ALIAS} -n 3\nhello")).check()
        listing = (await channels.execute("%bodhi_models")).check()
    finally:
        channels.close()
        httpx.delete(base + f"api/sessions/{session_id}", timeout=30,
                     headers={"Authorization": f"token {token}"})
    assert out.startswith("fake reply"), out
    assert magic.displays and magic.displays[-1].startswith("fake reply"), magic
    assert ALIAS in listing.results[-1], listing

    # what the panel asks for works the same: models with their metadata, a conversation,
    # a streamed chat
    panel = httpx.Client(base_url=base + "bodhi/", timeout=60,
                         headers={"Authorization": f"token {token}"})
    with panel:
        assert ALIAS in [m["id"] for m in panel.get("app/models").json()["data"]]
        r = panel.post("app/conversations", json={"title": "through the service"})
        assert r.status_code == 201, r.text
        with panel.stream("POST", "v1/chat/completions", json={**CHAT, "stream": True}) as s:
            assert s.status_code == 200
            assert s.headers["content-type"].startswith("text/event-stream")
            assert s.read().decode().rstrip().endswith("data: [DONE]")

    after = {r["user"]: r["requests"] for r in usage(hub, "user")}
    assert after["alice"] - before.get("alice", 0) == 3, (before, after)  # client, magic, panel
    assert set(after) <= set(before) | {"alice"}, after  # no server or service user
    r = httpx.get(base + "bodhi/app/processes", timeout=60,
                  headers={"Authorization": f"token {token}"})
    assert r.status_code == 200 and r.json()["data"] == [], r.text  # no local engine

    # bob, let into alice's server by a hub grant, would spend her quota there: refused
    r = httpx.post(base + "bodhi/v1/chat/completions", json=CHAT, timeout=60,
                   headers={"Authorization": f"token {hub.tokens['bob']}"})
    assert r.status_code == 403, r.text
    assert "as its owner 'alice'" in r.json()["error"]["message"], r.text
    assert {r["user"]: r["requests"] for r in usage(hub, "user")} == after


# -- audit, in service mode ------------------------------------------------------------------
class ServiceTrail:
    """Reads the service's audit log after each step as an admin (dana, by her hub group),
    and the service's output (the hub's log) for the step's one structured line."""

    def __init__(self, hub):
        self.hub, self.seen = hub, 0
        entries = self.entries()
        self.seen = max((e["id"] for e in entries), default=0)

    def entries(self) -> list[dict]:
        r = on_service(self.hub, "GET", "app/audit", "dana", params={"page_size": 200})
        assert r.status_code == 200, r.text
        return r.json()["data"]

    def one(self, action: str, target: str | None, actor: str = "dana") -> dict:
        fresh = [e for e in self.entries() if e["id"] > self.seen]
        assert [e["action"] for e in fresh] == [action], fresh
        (entry,) = fresh
        self.seen = entry["id"]
        assert (entry["actor"], entry["via"], entry["address"], entry["target"]) == (
            actor, "hub", "127.0.0.1", target), entry
        lines = [line for line in self.hub.log().splitlines()
                 if "bodhi-audit " in line and entry["request_id"] in line]
        assert len(lines) == 1, lines
        logged = json.loads(lines[0].split("bodhi-audit ", 1)[1])
        assert logged == {k: v for k, v in entry.items() if k != "id"}
        return entry


def test_each_change_to_the_service_leaves_exactly_one_audit_entry(hub):
    trail = ServiceTrail(hub)
    r = on_service(hub, "POST", "app/tokens", "dana", json={"name": "svc", "scope": "write"})
    assert r.status_code == 201, r.text
    token = r.json()
    trail.one("token.create", token["id"])
    assert on_service(hub, "PUT", f"app/tokens/{token['id']}", "dana",
                      json={"status": "inactive"}).status_code == 200
    assert trail.one("token.update", token["id"])["details"]["changes"] == {
        "status": "inactive"}
    assert on_service(hub, "DELETE", f"app/tokens/{token['id']}", "dana").status_code == 204
    trail.one("token.delete", token["id"])

    key = "EngineSupervisor.keep_alive"
    r = on_service(hub, "PUT", f"app/settings/{key}", "dana", json={"value": 120})
    assert r.status_code == 200, r.text
    assert trail.one("setting.update", key)["details"]["value"] == 120
    assert on_service(hub, "DELETE", f"app/settings/{key}", "dana").status_code == 200
    trail.one("setting.reset", key)

    r = on_service(hub, "POST", "app/aliases", "dana", json={"name": "svc-alias",
                                                             "model": ALIAS})
    assert r.status_code == 201, r.text
    trail.one("alias.create", "svc-alias")
    assert on_service(hub, "DELETE", "app/aliases/svc-alias", "dana").status_code == 204
    trail.one("alias.delete", "svc-alias")

    secret = "sk-fleet-7c1e0b55a9"
    r = on_service(hub, "POST", "app/upstreams", "dana", json={
        "name": "fleet", "base_url": "http://127.0.0.1:9/v1", "api_key": secret})
    assert r.status_code == 201, r.text
    assert trail.one("upstream.create", "fleet")["details"]["api_key"] == "set"
    assert on_service(hub, "DELETE", "app/upstreams/fleet", "dana").status_code == 204
    trail.one("upstream.delete", "fleet")

    r = on_service(hub, "POST", "app/processes", "dana", json={"model": ALIAS})
    assert r.status_code == 201, r.text
    engine = r.json()
    trail.one("engine.load", engine["id"])
    assert on_service(hub, "DELETE", f"app/processes/{engine['id']}", "dana").status_code == 204
    trail.one("engine.unload", engine["id"])

    # nobody's secret in any entry, nor in the service's log lines
    dump = json.dumps(trail.entries())
    assert secret not in dump and "bodhi_" not in dump.replace('"bodhi_token:', "")
    assert secret not in hub.log()


# -- load: two hub users at once through the shared service ----------------------------------
async def _chat_stream(client: httpx.AsyncClient, who: str, i: int) -> tuple[int, str]:
    body = {**CHAT, "stream": True, "max_tokens": 8,
            "stream_options": {"include_usage": True}, "messages": [
        {"role": "user", "content": f"[delay=0.05] request {i} of {who}"}]}
    async with client.stream("POST", "v1/chat/completions", json=body) as r:
        text = (await r.aread()).decode()
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "quota_concurrent", text
            assert int(r.headers["Retry-After"]) >= 1
        return r.status_code, text


async def test_two_users_at_once_complete_or_get_a_quota_429_and_lose_nothing(hub):
    import asyncio
    from datetime import datetime, timezone

    since = datetime.now(timezone.utc).isoformat()
    audit_before = ServiceTrail(hub).seen
    rounds, wave = 3, 5  # per user: 3 waves of 5 at once, over a quota of 3 at once
    outcomes: dict[str, list[int]] = {}

    async def user(who: str) -> None:
        async with httpx.AsyncClient(base_url=f"{hub.service}bodhi/", timeout=60, headers={
                "Authorization": f"Bearer {hub.tokens[who]}"}) as client:
            for n in range(rounds):
                done = await asyncio.gather(*(_chat_stream(client, who, n * wave + i)
                                              for i in range(wave)))
                for status, text in done:
                    assert status in (200, 429), (status, text)
                    if status == 200:
                        assert text.rstrip().endswith("data: [DONE]"), text[-200:]
                outcomes.setdefault(who, []).extend(status for status, _ in done)

    await asyncio.wait_for(asyncio.gather(user("alice"), user("bob")), timeout=120)
    for who in ("alice", "bob"):
        assert outcomes[who].count(200) >= rounds * STAFF_CONCURRENT, outcomes
        assert outcomes[who].count(429) >= 1, outcomes  # 5 at once over a quota of 3

    # every answered request is in the usage, and no refused one
    r = on_service(hub, "GET", "app/usage", "dana",
                   params={"group_by": "user", "user": "*", "since": since})
    assert r.status_code == 200, r.text
    used = {row["user"]: row for row in r.json()["data"]}
    for who in ("alice", "bob"):
        assert used[who]["requests"] == outcomes[who].count(200), (used, outcomes)
        assert used[who]["errors"] == 0 and used[who]["completion_tokens"] > 0, used
    # ... and every refusal is in the audit log, as the quota it hit
    r = on_service(hub, "GET", "app/audit", "dana",
                   params={"action": "quota.refused", "page_size": 200})
    refused = [e for e in r.json()["data"] if e["id"] > audit_before]
    for who in ("alice", "bob"):
        mine = [e for e in refused if e["actor"] == who]
        assert len(mine) == outcomes[who].count(429), (mine, outcomes)

    # neither can read the other's conversations or tokens
    r = on_service(hub, "POST", "app/conversations", "alice", json={"title": "alice only"})
    assert r.status_code == 201, r.text
    conversation = r.json()["id"]
    r = on_service(hub, "POST", "app/tokens", "alice", json={"name": "mine", "scope": "read"})
    assert r.status_code == 201, r.text
    token = r.json()["id"]
    listed = on_service(hub, "GET", "app/conversations", "bob").json()["data"]
    assert conversation not in [c["id"] for c in listed]
    assert token not in [t["id"] for t in on_service(hub, "GET", "app/tokens",
                                                     "bob").json()["data"]]
    for method, path in (("GET", f"app/conversations/{conversation}"),
                         ("DELETE", f"app/conversations/{conversation}"),
                         ("GET", f"app/tokens/{token}"), ("DELETE", f"app/tokens/{token}")):
        assert on_service(hub, method, path, "bob").status_code == 404, (method, path)
    assert on_service(hub, "GET", f"app/conversations/{conversation}",
                      "alice").status_code == 200
    assert on_service(hub, "DELETE", f"app/tokens/{token}", "alice").status_code == 204
