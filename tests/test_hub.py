"""The extension in real JupyterHub single-user servers, behind the hub's proxy.

One hub for the module: alice owns a server with the extension (fake engine); bob is in the
hub group ``staff`` (``power_user`` in bodhi through ``RolePolicy.group_roles``) and holds a
hub role granting ``access:servers!user=alice``; carol is a hub user without that access.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from .hub import fake_engine, start_hub, stop_hub

pytestmark = pytest.mark.timeout(120)

ALIAS = "fake-hub"
CHAT = {"model": ALIAS, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hub")
    wrapper, model = fake_engine(tmp)
    config_dir = tmp / "jupyter-config"  # the single-user servers' JUPYTER_CONFIG_DIR
    config_dir.mkdir()
    (config_dir / "jupyter_server_config.json").write_text(json.dumps({
        "ServerApp": {"allow_unauthenticated_access": False},
        "LlamaServerLauncher": {"llama_server_path": str(wrapper), "threads": 0},
        "ModelRegistry": {"aliases": {ALIAS: {"model": str(model)}},
                          "default_ctx_size": 1024, "default_parallel": 1},
        "EngineSupervisor": {"stop_grace": 2.0},
        "RolePolicy": {"group_roles": {"staff": "power_user"}},
    }))
    hub = start_hub(
        tmp,
        singleuser_env={"JUPYTER_CONFIG_DIR": str(config_dir)},
        allowed_users=["alice", "bob", "carol"],
        groups={"staff": {"users": ["bob"]}},
        roles=[{"name": "alice-server-access", "scopes": ["access:servers!user=alice"],
                "users": ["bob"]}],
    )
    try:
        for name in ("alice", "bob", "carol"):
            hub.ensure_user(name)
        hub.start_server("alice")
        hub.tokens = {name: hub.new_token(name) for name in ("alice", "bob", "carol")}
        # bob's own token, narrowed to his own server: no access to alice's
        hub.tokens["bob-own-only"] = hub.new_token("bob", scopes=["access:servers!user=bob"])
        yield hub
    finally:
        stop_hub(hub)


def on_alice(hub, method: str, path: str, who: str, **kwargs) -> httpx.Response:
    token = hub.tokens.get(who, who)  # a user's hub token by name, or a raw token
    return httpx.request(method, f"{hub.url}/user/alice/bodhi/{path}", timeout=30,
                         headers={"Authorization": f"token {token}"}, **kwargs)


def test_owner_is_admin_lists_models_and_chats_with_openai_client(hub):
    r = on_alice(hub, "GET", "app/user", "alice")
    assert r.status_code == 200, r.text
    me = r.json()
    assert (me["name"], me["role"], me["auth_method"]) == ("alice", "admin", "jupyter")

    r = on_alice(hub, "GET", "v1/models", "alice")
    assert r.status_code == 200, r.text
    assert ALIAS in [m["id"] for m in r.json()["data"]]

    llm = openai.OpenAI(base_url=f"{hub.url}/user/alice/bodhi/v1",
                        api_key=hub.tokens["alice"], max_retries=0, timeout=30)
    reply = llm.chat.completions.create(**CHAT)
    assert reply.choices[0].message.content == "fake reply 1"


@pytest.mark.parametrize("who", ["carol", "bob-own-only"])
def test_no_access_to_alice_server_is_403(hub, who):
    for method, path, kwargs in [("GET", "app/user", {}), ("GET", "v1/models", {}),
                                 ("POST", "v1/chat/completions", {"json": CHAT})]:
        r = on_alice(hub, method, path, who, **kwargs)
        # the hub's identity provider refuses inside our handler's prepare(), so the 403
        # still has the OpenAI error shape
        assert r.status_code == 403, (path, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json"), r.headers
        assert r.json()["error"]["code"] == "forbidden", r.text


def test_granted_group_member_is_power_user(hub):
    r = on_alice(hub, "GET", "app/user", "bob")
    assert r.status_code == 200, r.text
    me = r.json()
    assert (me["name"], me["role"], me["auth_method"], me["scope"]) == (
        "bob", "power_user", "jupyter", "write")

    r = on_alice(hub, "POST", "v1/chat/completions", "bob", json=CHAT)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "fake reply 1"

    r = on_alice(hub, "GET", "app/settings", "bob")
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "insufficient_scope"

    # a token bob mints keeps his group's role (the token remembers his hub groups)
    r = on_alice(hub, "POST", "app/tokens", "bob", json={"name": "bob-tool", "scope": "write"})
    assert r.status_code == 201, r.text
    r = on_alice(hub, "GET", "app/user", r.json()["token"])
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["role"], r.json()["auth_method"]) == (
        "bob", "power_user", "bodhi_token")


def test_bodhi_token_minted_with_hub_token_works_through_the_proxy(hub):
    r = on_alice(hub, "POST", "app/tokens", "alice", json={"name": "via-hub", "scope": "read"})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert token.startswith("bodhi_")

    r = on_alice(hub, "GET", "v1/models", token)
    assert r.status_code == 200, r.text
    assert ALIAS in [m["id"] for m in r.json()["data"]]
    r = on_alice(hub, "GET", "app/user", token)
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["auth_method"]) == ("alice", "bodhi_token")
    # also as the openai client sends it
    r = httpx.get(f"{hub.url}/user/alice/bodhi/v1/models", timeout=30,
                  headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text


def test_audit_names_the_hub_as_the_credential_and_is_for_admins(hub):
    r = on_alice(hub, "POST", "app/tokens", "alice", json={"name": "audited", "scope": "read"})
    assert r.status_code == 201, r.text
    token = r.json()
    r = on_alice(hub, "GET", "app/audit", "alice", params={"action": "token.create"})
    assert r.status_code == 200, r.text
    (entry,) = [e for e in r.json()["data"] if e["target"] == token["id"]]
    assert (entry["actor"], entry["via"], entry["details"]["name"]) == ("alice", "hub",
                                                                        "audited")
    assert entry["address"] and token["token"] not in r.text
    r = on_alice(hub, "GET", "app/audit", "bob")  # power_user: not an admin
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "insufficient_scope"


def test_engine_started_in_alice_server_is_owned_by_alice(hub):
    r = on_alice(hub, "POST", "v1/chat/completions", "alice", json=CHAT)
    assert r.status_code == 200, r.text
    r = on_alice(hub, "GET", "app/processes", "alice")
    assert r.status_code == 200, r.text
    owners = {(p["owner"], p["model"]) for p in r.json()["data"]}
    assert ("alice", ALIAS) in owners, owners


async def test_a_kernel_in_alice_server_reaches_her_server_and_counts_as_her_notebook(hub):
    from .kernel_exec import KernelChannels, start_session

    base, token = f"{hub.url}/user/alice/", hub.tokens["alice"]
    r = httpx.put(base + "api/contents/hub-notes.ipynb", timeout=30,
                  headers={"Authorization": f"token {token}"},
                  json={"type": "notebook", "content": {
                      "nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}})
    assert r.status_code in (200, 201), r.text
    session_id, kernel_id = start_session(base, token, "hub-notes.ipynb")
    channels = await KernelChannels.connect(base, token, kernel_id)  # through the proxy
    try:
        out = (await channels.execute(f"""
import os, bodhi_jupyter
llm = bodhi_jupyter.client(max_retries=0, timeout=60)
print(llm.base_url)
print(os.environ["BODHI_API_KEY"])
print(llm.chat.completions.create(**{CHAT!r}).choices[0].message.content)
""")).check().stdout.split()
    finally:
        channels.close()
    url, key, reply = out[0], out[1], " ".join(out[2:])
    # her server's own local address, not the hub's proxy
    assert url.startswith("http://127.0.0.1:") and url.rstrip("/").endswith(
        "/user/alice/bodhi/v1"), url
    assert hub.url.rsplit(":", 1)[1] not in url.split("/")[2]
    assert reply.startswith("fake reply"), reply

    r = on_alice(hub, "GET", "app/user", key)
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["auth_method"], r.json()["scope"]) == (
        "alice", "bodhi_token", "write")
    r = on_alice(hub, "GET", "app/usage", "alice", params={"group_by": "user,notebook"})
    assert r.status_code == 200, r.text
    assert {"user": "alice", "notebook": "hub-notes.ipynb", "requests": 1} in [
        {k: row[k] for k in ("user", "notebook", "requests")} for row in r.json()["data"]]

    r = httpx.delete(base + f"api/sessions/{session_id}", timeout=30,
                     headers={"Authorization": f"token {token}"})
    assert r.status_code == 204, r.text
    assert on_alice(hub, "GET", "app/user", key).status_code == 401
