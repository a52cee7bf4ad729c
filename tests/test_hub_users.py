"""Users of one hub cannot see or use each other's bodhi records, and engines end with
their server (stopped through the hub or culled by jupyterhub-idle-culler), while API
traffic alone keeps a server from being culled.

One hub for the module. alice and bob own servers. carol may use alice's server (hub role
``access:servers!user=alice``, bodhi role ``user``): the shared-server case, where keeping
alice's records from carol is bodhi's job rather than the hub's. dave and erin are in the
hub group ``cullable``, the only users the idle culler (a hub-managed service) can see, so it
never stops a server another test is using.

Routes come from the OpenAPI document: a route added later must be classified here as
per-user or not (with a reason), or ``test_every_route_is_classified`` fails.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from datetime import datetime

import httpx
import psutil
import pytest

from .hub import fake_engine_env, start_hub, stop_hub, wait_for

pytestmark = pytest.mark.timeout(240)

ALIAS = "fake-users"
CHAT = {"model": ALIAS, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
METHODS = ("get", "post", "put", "patch", "delete")
CULL_TIMEOUT = 15  # seconds idle before the culler stops a server
CULL_EVERY = 3
ACTIVITY_INTERVAL = 2  # how often a single-user server tells the hub of its activity

#: path prefixes (in the OpenAPI document, below ``bodhi``) whose records belong to a user
PER_USER = ("/app/conversations", "/app/tokens", "/app/processes", "/app/usage")
#: everything else, and why its isolation is not checked here
NOT_PER_USER = {
    "/v1/": "inference: stores nothing of its own (its usage rows are checked via /app/usage)",
    "/api/": "Ollama-compatible inference, like /v1",
    "/openapi.json": "the same document for everyone",
    "/metrics": "server-wide counters, no records",
    "/app/info": "server-wide facts, no records",
    "/app/user": "the caller's own identity",
    "/app/settings": "server-wide settings, admin-only to change",
    "/app/models": "server-wide model files and downloads, admin-only to start",
    "/app/aliases": "server-wide model configuration, admin-only to change",
    "/app/upstreams": "server-wide remote endpoints, admin-only to change",
    "/app/audit": "an admin-only log of everyone's actions",
}
#: bodies that pass validation, so that a 404 is about whose record it is
BODIES = {
    ("put", "/app/conversations/{conversation_id}"): {"title": "taken over"},
    ("post", "/app/conversations/{conversation_id}/messages"): {"role": "user",
                                                                 "content": "mine now"},
    ("put", "/app/conversations/{conversation_id}/messages/{message_id}"): {"content": "x"},
    ("put", "/app/tokens/{token_id}"): {"status": "inactive"},
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hub-users")
    env = fake_engine_env(tmp, ALIAS, {"EngineSupervisor": {"keep_alive": -1}})
    env["JUPYTERHUB_ACTIVITY_INTERVAL"] = str(ACTIVITY_INTERVAL)
    cull_scopes = [f"{s}!group=cullable" for s in
                   ("list:users", "read:users:activity", "read:servers", "delete:servers")]
    hub = start_hub(
        tmp,
        singleuser_env=env,
        allowed_users=["alice", "bob", "carol", "dave", "erin"],
        groups={"cullable": {"users": ["dave", "erin"]}},
        roles=[{"name": "alice-server-access", "scopes": ["access:servers!user=alice"],
                "users": ["carol"]},
               {"name": "idle-culler", "scopes": cull_scopes, "services": ["idle-culler"]}],
        services=[{"name": "idle-culler", "command": [
            sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={CULL_TIMEOUT}",
            f"--cull-every={CULL_EVERY}", "--concurrency=1"]}],
        # the hub's own poll of the proxy's routes would also count traffic as activity;
        # pushed out of the test's reach, only the servers' own reports feed last_activity
        config={"JupyterHub": {"last_activity_interval": 3600}},
    )
    try:
        for name in ("alice", "bob", "carol", "dave", "erin"):
            hub.ensure_user(name)
        hub.start_server("alice")
        hub.start_server("bob")
        hub.tokens = {name: hub.new_token(name) for name in ("alice", "bob", "carol")}
        yield hub
    finally:
        stop_hub(hub)


def call(hub, who: str, owner: str, method: str, path: str, **kwargs) -> httpx.Response:
    """A request to ``owner``'s server as ``who`` (a user's hub token by name, or a raw
    token), through the hub's proxy."""
    token = hub.tokens.get(who, who)
    return httpx.request(method, f"{hub.url}/user/{owner}/bodhi{path}", timeout=30,
                         headers={"Authorization": f"token {token}"}, **kwargs)


@pytest.fixture(scope="module")
def alice_records(hub) -> dict[str, str]:
    """One of each per-user record, alice's, made on her server: ids by path parameter."""
    r = call(hub, "alice", "alice", "POST", "/app/conversations", json={"title": "alice's"})
    assert r.status_code == 201, r.text
    conversation = r.json()["id"]
    r = call(hub, "alice", "alice", "POST", f"/app/conversations/{conversation}/messages",
             json={"role": "user", "content": "a secret question"})
    assert r.status_code == 201, r.text
    message = r.json()["id"]
    r = call(hub, "alice", "alice", "POST", "/app/tokens", json={"name": "alice-tool",
                                                                  "scope": "write"})
    assert r.status_code == 201, r.text
    token_id, token = r.json()["id"], r.json()["token"]
    r = call(hub, "alice", "alice", "POST", "/app/processes", json={"model": ALIAS})
    assert r.status_code == 201, r.text
    process = r.json()["id"]
    r = call(hub, "alice", "alice", "POST", "/v1/chat/completions", json=CHAT)  # a usage row
    assert r.status_code == 200, r.text
    return {"conversation_id": conversation, "message_id": message, "token_id": token_id,
            "process_id": process, "token": token}


@pytest.fixture(scope="module")
def document(hub) -> dict:
    """The OpenAPI document of alice's server."""
    r = call(hub, "alice", "alice", "GET", "/openapi.json")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def operations(document) -> list[tuple[str, str]]:
    """(method, path) of every operation in the document."""
    ops = [(m, path) for path, item in document["paths"].items() for m in item if m in METHODS]
    assert len(ops) > 40, ops  # the whole API, not a stub
    return ops


def query_parameters(document, method: str, path: str) -> set[str]:
    return {p["name"] for p in document["paths"][path][method].get("parameters", [])
            if p.get("in") == "query"}


def family(path: str) -> str:
    """'per-user' or the reason a path is not per-user; KeyError for an unclassified one."""
    if path.startswith(PER_USER):
        return "per-user"
    for prefix, why in NOT_PER_USER.items():
        if path.startswith(prefix):
            return why
    raise KeyError(path)


def fill(path: str, ids: dict[str, str]) -> str:
    """The path with its parameters replaced: alice's record ids, or a placeholder for
    parameters that name no per-user record."""
    return re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "x"), path)


def strings(value) -> set[str]:
    """Every string anywhere in a JSON value."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*map(strings, value.values()), set(value))
    if isinstance(value, list):
        return set().union(set(), *map(strings, value))
    return set()


def test_every_route_is_classified(operations):
    unclassified = []
    for _method, path in operations:
        try:
            family(path)
        except KeyError:
            unclassified.append(path)
    assert not unclassified, ("classify these routes in PER_USER or NOT_PER_USER (with the "
                              f"reason): {sorted(set(unclassified))}")
    per_user = [op for op in operations if family(op[1]) == "per-user"]
    assert {("get", "/app/conversations/{conversation_id}"), ("delete", "/app/tokens/{token_id}"),
            ("get", "/app/processes/{process_id}/log"), ("get", "/app/usage")} <= set(per_user)


def test_another_users_hub_token_is_refused_on_every_route(hub, operations, alice_records):
    """bob has no access to alice's server: the hub's identity refuses him everywhere,
    with alice's real record ids in the paths."""
    allowed = []
    for method, path in operations:
        r = call(hub, "bob", "alice", method.upper(), fill(path, alice_records),
                 **({"json": {}} if method in ("post", "put", "patch") else {}))
        if r.status_code != 403:
            allowed.append((method, path, r.status_code, r.text[:200]))
    assert not allowed, allowed


def test_a_bodhi_token_of_alice_is_refused_on_bobs_server(hub, operations, alice_records):
    token = alice_records["token"]
    assert call(hub, token, "alice", "GET", "/app/user").json()["name"] == "alice"  # valid
    accepted = []
    for method, path in operations:
        r = call(hub, token, "bob", method.upper(), fill(path, alice_records),
                 **({"json": {}} if method in ("post", "put", "patch") else {}))
        if r.status_code not in (401, 403):
            accepted.append((method, path, r.status_code, r.text[:200]))
    assert not accepted, accepted
    r = call(hub, token, "bob", "GET", "/v1/models")
    assert r.status_code == 401, r.text


def per_user_ops(operations):
    return [(m, p) for m, p in operations if family(p) == "per-user"]


def assert_isolated(hub, who: str, server: str, document, operations,
                    alice_records) -> list[str]:
    """Every per-user route on ``server``, as ``who``, with alice's record ids: records are
    404 (or 403), listings do not show them, and where a listing takes ``user``, naming
    alice (or everyone) is 403. Returns what was skipped, with why."""
    secrets = {alice_records["conversation_id"], alice_records["message_id"],
               alice_records["token_id"], alice_records["process_id"]}
    leaks, skipped = [], []
    for method, path in per_user_ops(operations):
        has_params = "{" in path
        if not has_params and method == "post":
            skipped.append(f"{method} {path}: creates the caller's own record")
            continue
        url = fill(path, alice_records)
        if has_params:
            body = BODIES.get((method, path), {} if method in ("post", "put") else None)
            r = call(hub, who, server, method.upper(), url,
                     **({"json": body} if body is not None else {}))
            if r.status_code not in (403, 404):
                leaks.append((method, path, r.status_code, r.text[:200]))
            continue
        r = call(hub, who, server, "GET", url)  # a listing: alice's records are not in it
        if r.status_code != 200 or strings(r.json()) & (secrets | {"alice"}):
            leaks.append((method, path, r.status_code, r.text[:300]))
        takes_user = "user" in query_parameters(document, method, path)
        for user in ("alice", "*"):  # asking for alice's (or everyone's) is refused or ignored
            r = call(hub, who, server, "GET", url, params={"user": user})
            if (r.status_code != 403 if takes_user else
                    r.status_code != 200 or strings(r.json()) & (secrets | {"alice"})):
                leaks.append((method, f"{path}?user={user}", r.status_code, r.text[:300]))
    assert not leaks, leaks
    return skipped


def test_a_user_sharing_alices_server_cannot_see_or_use_her_records(
        hub, document, operations, alice_records):
    r = call(hub, "carol", "alice", "GET", "/app/user")
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["role"]) == ("carol", "user")
    # carol's own records exist and are hers, so the listings are not merely empty
    r = call(hub, "carol", "alice", "POST", "/app/conversations", json={"title": "carol's"})
    assert r.status_code == 201, r.text
    r = call(hub, "carol", "alice", "POST", "/v1/chat/completions", json=CHAT)
    assert r.status_code == 200, r.text
    r = call(hub, "carol", "alice", "GET", "/app/conversations")
    assert [c["title"] for c in r.json()["data"]] == ["carol's"]

    skipped = assert_isolated(hub, "carol", "alice", document, operations, alice_records)
    assert sorted(skipped) == ["post /app/conversations: creates the caller's own record",
                               "post /app/processes: creates the caller's own record",
                               "post /app/tokens: creates the caller's own record"], skipped

    # and nothing of alice's changed
    r = call(hub, "alice", "alice", "GET", f"/app/conversations/{alice_records['conversation_id']}")
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "alice's"
    assert [m["content"] for m in r.json()["messages"]] == ["a secret question"]
    r = call(hub, alice_records["token"], "alice", "GET", "/app/user")
    assert r.status_code == 200 and r.json()["name"] == "alice", r.text
    r = call(hub, "alice", "alice", "GET", f"/app/processes/{alice_records['process_id']}")
    assert r.status_code == 200 and r.json()["state"] == "ready", r.text


def test_alices_records_do_not_exist_on_bobs_server_even_for_its_admin(
        hub, operations, alice_records):
    r = call(hub, "bob", "bob", "GET", "/app/user")
    assert (r.json()["name"], r.json()["role"]) == ("bob", "admin"), r.text
    for method, path in per_user_ops(operations):
        if "{" not in path:
            continue
        body = BODIES.get((method, path), {} if method in ("post", "put") else None)
        r = call(hub, "bob", "bob", method.upper(), fill(path, alice_records),
                 **({"json": body} if body is not None else {}))
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    r = call(hub, "bob", "bob", "GET", "/app/usage", params={"user": "*"})
    assert r.status_code == 200 and "alice" not in strings(r.json()), r.text


def engine_pid(hub, name: str) -> int:
    """Load the fake engine on ``name``'s server; its pid, checked to be alive."""
    token = hub.tokens.get(name) or hub.tokens.setdefault(name, hub.new_token(name))
    r = call(hub, token, name, "POST", "/app/processes", json={"model": ALIAS})
    assert r.status_code == 201, r.text
    pid = r.json()["pid"]
    proc = psutil.Process(pid)
    assert proc.environ().get("JUPYTERHUB_USER") == name
    assert proc in hub.user_processes(name)
    return pid


def assert_all_gone(hub, name: str, engine: int, timeout: float = 30) -> None:
    """``name``'s engine and every other process of their server end within ``timeout``."""
    wait_for(lambda: not psutil.pid_exists(engine)
             or psutil.Process(engine).status() == psutil.STATUS_ZOMBIE,
             timeout, f"{name}'s engine (pid {engine}) to end")
    wait_for(lambda: not hub.user_processes(name), timeout,
             f"every process of {name}'s server to end: {hub.user_processes(name)}")


def test_stopping_a_server_through_the_hub_stops_its_engines(hub):
    pid = engine_pid(hub, "bob")
    hub.stop_server("bob")
    assert_all_gone(hub, "bob", pid)


def last_activity(hub, name: str) -> datetime | None:
    server = hub.server(name)
    return datetime.fromisoformat(server["last_activity"]) if server else None


def test_an_idle_server_is_culled_and_one_busy_with_api_traffic_is_not(hub):
    hub.start_server("dave")
    token = hub.tokens.setdefault("dave", hub.new_token("dave"))
    stop, replies, errors = threading.Event(), [], []

    def traffic():
        """A streamed chat every couple of seconds, as a script using the API would."""
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
            while not stop.is_set():
                try:
                    with http.stream("POST", f"{hub.url}/user/dave/bodhi/v1/chat/completions",
                                     json={**CHAT, "stream": True}) as r:
                        replies.append((r.status_code, r.read()))
                except httpx.HTTPError as e:
                    errors.append(repr(e))
                stop.wait(2)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        wait_for(lambda: replies, 30, "dave's first reply")
        assert replies[0][0] == 200 and b"data: [DONE]" in replies[0][1], replies[0]
        dave_engine = call(hub, token, "dave", "GET", "/app/processes").json()["data"][0]["pid"]
        started = time.monotonic()
        first_seen = last_activity(hub, "dave")

        hub.start_server("erin")
        erin_engine = engine_pid(hub, "erin")
        wait_for(lambda: hub.server("erin") is None, CULL_TIMEOUT + 4 * CULL_EVERY + 30,
                 "the culler to stop erin's idle server", every=0.5)
        assert_all_gone(hub, "erin", erin_engine)
        assert "Culling server erin" in hub.log()  # the culler did it, not anything else

        # over twice the idle timeout, dave's server keeps running on API traffic alone
        wait_for(lambda: time.monotonic() - started > 2 * CULL_TIMEOUT, 3 * CULL_TIMEOUT,
                 "twice the idle timeout to pass", every=0.5)
        assert hub.server("dave") is not None, "dave's busy server was culled"
        assert last_activity(hub, "dave") > first_seen  # the hub heard of the traffic
        assert all(status == 200 for status, _ in replies) and not errors, (replies, errors)
        assert len(replies) >= CULL_TIMEOUT // 3, replies
    finally:
        stop.set()
        worker.join(35)

    # without traffic, dave's server goes the same way, engine and all
    wait_for(lambda: hub.server("dave") is None, CULL_TIMEOUT + 4 * CULL_EVERY + 30,
             "the culler to stop dave's server once it is idle", every=0.5)
    assert_all_gone(hub, "dave", dave_engine)
