"""``bodhi/app/models/pulls`` over HTTP against the local hub stand-in: the lifecycle, the
hub's errors as clean answers, scopes, restart records, the notebook helper, and one real
pull of the demo model that the stock openai client then chats with."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from bodhi_jupyter.auth.identity import server_owner

from ..conftest import until
from ..hf_hub_stand_in import HubStandIn, tiny_gguf
from .test_errors import assert_error_shape

REPO = "someone/tiny-GGUF"
FILE = "tiny-Q4_K_M.gguf"
MODEL_ID = f"{REPO}:Q4_K_M"


@pytest.fixture
def hub():
    with HubStandIn() as h:
        yield h


@pytest.fixture
def bodhi_config(hub):
    # a registry that would not rescan for an hour: a pulled model must be listed anyway
    return {"PullManager": {"endpoint": hub.url, "retry_wait": 0.01},
            "ModelRegistry": {"rescan_interval": 3600.0}}


async def finished(http, pull_id: str, timeout: float = 30) -> dict:
    state = {}

    async def ended():
        state.update((await http.get(f"app/models/pulls/{pull_id}")).json())
        return state["state"] in ("done", "failed", "cancelled")

    await until(ended, timeout, 0.05)
    return state


async def test_pull_lifecycle(http, bodhi_app, hub):
    data = tiny_gguf(150_000)
    hub.add(REPO, FILE, data)
    await http.get("v1/models")  # the registry has scanned: the throttle is running
    resp = await http.post("app/models/pulls", json={"repo": REPO, "filename": FILE})
    assert resp.status_code == 201, resp.text
    pull = resp.json()
    assert resp.headers["Location"].endswith(f"/bodhi/app/models/pulls/{pull['id']}")
    assert (pull["repo"], pull["filename"], pull["revision"]) == (REPO, FILE, "main")
    assert pull["state"] in ("queued", "running") and pull["bytes_total"] == len(data)
    assert pull["files"] == [FILE] and pull["created_by"] == server_owner()
    done = await finished(http, pull["id"])
    assert done["state"] == "done", done["error"]
    assert done["model_id"] == MODEL_ID and done["bytes_done"] == len(data)
    assert done["speed"] is None and done["eta_s"] is None
    models = [m["id"] for m in (await http.get("v1/models")).json()["data"]]
    assert MODEL_ID in models  # at once, though the registry would not rescan for an hour
    listing = (await http.get("app/models/pulls")).json()
    assert listing["total"] == 1 and listing["data"][0]["id"] == pull["id"]
    # a finished pull's DELETE takes it off the list; the model stays
    assert (await http.delete(f"app/models/pulls/{pull['id']}")).status_code == 204
    gone = await http.get(f"app/models/pulls/{pull['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "pull_not_found"
    assert MODEL_ID in [m["id"] for m in (await http.get("v1/models")).json()["data"]]


async def test_running_pull_is_shared_shows_progress_and_cancels(http, bodhi_app, hub,
                                                                 _isolated_hf_home):
    f = hub.add(REPO, FILE, tiny_gguf(3_000_000), delay=0.02)
    body = {"repo": REPO, "filename": FILE}
    first = (await http.post("app/models/pulls", json=body)).json()
    again = await http.post("app/models/pulls", json={**body, "revision": "main"})
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    state = {}

    async def moving():
        state.update((await http.get(f"app/models/pulls/{first['id']}")).json())
        return state["state"] == "running" and state["speed"] and state["eta_s"]

    await until(moving, 20, 0.05)
    assert 0 < state["bytes_done"] < state["bytes_total"] == 3_000_000
    assert (await http.delete(f"app/models/pulls/{first['id']}")).status_code == 204
    cancelled = (await http.get(f"app/models/pulls/{first['id']}")).json()
    assert cancelled["state"] == "cancelled"
    assert not list(_isolated_hf_home.rglob("*.incomplete"))
    assert f.served < 3_000_000


async def test_retry_resumes_a_failed_pull(http, bodhi_app, hub):
    data = tiny_gguf(400_000)
    f = hub.add(REPO, FILE, data, drop_after=150_000, drop_times=1)
    bodhi_app.pulls.retries = 0
    pull = (await http.post("app/models/pulls", json={"repo": REPO, "filename": FILE})).json()
    failed = await finished(http, pull["id"])
    assert failed["state"] == "failed" and failed["error"]["code"] == "network_error"
    assert set(failed["error"]) == {"message", "type", "code"}
    resp = await http.post(f"app/models/pulls/{pull['id']}/retry")
    assert resp.status_code == 200 and resp.json()["state"] in ("queued", "running")
    done = await finished(http, pull["id"])
    assert done["state"] == "done" and f.served == len(data)


async def test_bad_requests_and_hub_errors_are_clean_answers(http, bodhi_app, hub):
    hub.add(REPO, FILE, tiny_gguf(1000))
    hub.add("owner/gated", FILE, tiny_gguf(1000))
    hub.gate("owner/gated", "hf_right")
    hub.add(REPO, "huge-Q4_0.gguf", tiny_gguf(1000))
    hub.repos[REPO].files["huge-Q4_0.gguf"].size = 10**15
    cases = [
        ({"repo": REPO}, 400, "missing_required_field", "filename"),
        ({"repo": REPO, "filename": FILE, "token": "x"}, 400, "unknown_field", "token"),
        ({"repo": "no-slash", "filename": FILE}, 400, "invalid_value", "repo"),
        ({"repo": REPO, "filename": "model.safetensors"}, 400, "not_gguf", "filename"),
        ({"repo": REPO, "filename": "../x.gguf"}, 400, "invalid_value", "filename"),
        ({"repo": "nobody/here", "filename": FILE}, 404, "repo_not_found", None),
        ({"repo": REPO, "filename": "nope.gguf"}, 404, "file_not_found", None),
        ({"repo": REPO, "filename": FILE, "revision": "v2"}, 404, "revision_not_found", None),
        ({"repo": "owner/gated", "filename": FILE}, 403, "gated", None),
        ({"repo": REPO, "filename": "huge-Q4_0.gguf"}, 507, "disk_full", None),
    ]
    for body, status, code, param in cases:
        resp = await http.post("app/models/pulls", json=body)
        assert resp.status_code == status, (body, resp.text)
        assert_error_shape(resp, status, code, param)
    gated = await http.post("app/models/pulls", json={"repo": "owner/gated", "filename": FILE})
    assert "HF_TOKEN" in gated.json()["error"]["message"]
    assert "WWW-Authenticate" not in gated.headers  # not our credentials' fault
    assert (await http.post("app/models/pulls", content=b"[1]")).status_code == 400
    hub.down = True
    resp = await http.post("app/models/pulls", json={"repo": REPO, "filename": FILE})
    assert resp.status_code == 502 and resp.json()["error"]["code"] == "network_error"
    assert (await http.get("app/models/pulls")).json()["total"] == 0  # nothing recorded
    for method, path in (("GET", "app/models/pulls/nope"), ("DELETE", "app/models/pulls/nope"),
                         ("POST", "app/models/pulls/nope/retry")):
        resp = await http.request(method, path)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "pull_not_found"


async def test_read_lists_admin_pulls(http, bodhi_app, hub):
    hub.add(REPO, FILE, tiny_gguf(1000))
    pull = (await http.post("app/models/pulls", json={"repo": REPO, "filename": FILE})).json()
    await finished(http, pull["id"])
    for scope in ("read", "write"):
        token, _ = bodhi_app.tokens.create(server_owner(), f"nb-{scope}", scope)
        async with httpx.AsyncClient(base_url=str(http.base_url),
                                     headers={"Authorization": f"Bearer {token}"}) as c:
            assert (await c.get("app/models/pulls")).json()["total"] == 1
            assert (await c.get(f"app/models/pulls/{pull['id']}")).status_code == 200
            for method, path, body in (
                    ("POST", "app/models/pulls", {"repo": REPO, "filename": FILE}),
                    ("DELETE", f"app/models/pulls/{pull['id']}", None),
                    ("POST", f"app/models/pulls/{pull['id']}/retry", None)):
                resp = await c.request(method, path, json=body)
                assert resp.status_code == 403, (scope, method, path)
                assert resp.json()["error"]["code"] == "insufficient_scope"
    assert (await http.get("app/models/pulls")).json()["total"] == 1


@pytest.fixture
def interrupted_db(database):
    """A database the last server left with a pull running."""
    from bodhi_jupyter.store.tables import pulls

    with database.begin() as conn:
        conn.execute(pulls.insert().values(id="p1", repo=REPO, filename=FILE, revision="main",
                                           state="running", bytes_done=5, files=[FILE],
                                           parts=[]))
    return database


async def test_a_notebook_of_an_admin_may_pull_other_tokens_may_not(http, bodhi_app, hub):
    """bodhi_jupyter.pull() in a kernel the server started sends the kernel's credential
    (scope write): pulls take it when its owner is an admin, never another user's."""
    hub.add(REPO, FILE, tiny_gguf(1000))
    kernel_key, _ = bodhi_app.tokens.create(server_owner(), "kernel: a.ipynb", "write",
                                            kernel_server="local:test", notebook="a.ipynb")
    users_key, _ = bodhi_app.tokens.create("someone-else", "kernel: b.ipynb", "write",
                                           kernel_server="local:test", notebook="b.ipynb")
    plain_key, _ = bodhi_app.tokens.create(server_owner(), "scripts", "write")
    for key, allowed in ((users_key, False), (plain_key, False), (kernel_key, True)):
        async with httpx.AsyncClient(base_url=str(http.base_url),
                                     headers={"Authorization": f"Bearer {key}"}) as c:
            resp = await c.post("app/models/pulls", json={"repo": REPO, "filename": FILE})
            if not allowed:
                assert resp.status_code == 403
                assert resp.json()["error"]["code"] == "insufficient_scope"
                continue
            assert resp.status_code == 201, resp.text
            assert (await finished(http, resp.json()["id"]))["state"] == "done"
            # the same credential still may not manage aliases (admin, not a notebook's)
            alias = await c.post("app/aliases", json={"alias": "x", "model": MODEL_ID})
            assert alias.status_code == 403


@pytest.fixture
def restart_config(bodhi_config, interrupted_db):
    bodhi_config["Database"] = {"url": interrupted_db.url}
    return bodhi_config


async def test_a_restart_marks_running_pulls_failed(restart_config, http, bodhi_app, hub):
    hub.add(REPO, FILE, tiny_gguf(2000))
    pull = (await http.get("app/models/pulls/p1")).json()
    assert pull["state"] == "failed" and pull["error"]["code"] == "interrupted"
    assert "restart" in pull["error"]["message"]
    await http.post("app/models/pulls/p1/retry")
    assert (await finished(http, "p1"))["state"] == "done"


async def test_notebook_helper_pulls_with_progress(bodhi_app, hub, api_url,
                                                   jupyter_token, monkeypatch, capsys):
    import bodhi_jupyter
    from bodhi_jupyter.kernel.pulls import PullFailed

    hub.add(REPO, FILE, tiny_gguf(500_000), delay=0.002)
    monkeypatch.setenv("BODHI_BASE_URL", api_url)
    monkeypatch.setenv("BODHI_API_KEY", jupyter_token)
    model = await asyncio.to_thread(bodhi_jupyter.pull, REPO, FILE, poll_interval=0.05)
    assert model == MODEL_ID
    err = capsys.readouterr().err  # tqdm's bar, as a terminal shows it
    assert FILE in err and "100%" in err
    with pytest.raises(PullFailed) as e:
        await asyncio.to_thread(bodhi_jupyter.pull, REPO, "missing.gguf", progress=False)
    assert e.value.code == "file_not_found" and "404" in str(e.value)


async def test_pull_the_demo_model_then_chat(http, bodhi_app, hub, smollm2_path,
                                             openai_client):
    repo = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
    hub.add(repo, "smollm2-135m-instruct-q4_1.gguf", path=smollm2_path)
    pull = (await http.post("app/models/pulls", json={
        "repo": repo, "filename": "smollm2-135m-instruct-q4_1.gguf"})).json()
    done = await finished(http, pull["id"], 120)
    assert done["state"] == "done", done["error"]
    assert done["model_id"] == f"{repo}:Q4_1"
    reply = await openai_client.chat.completions.create(
        model=done["model_id"], temperature=0, max_tokens=16,
        messages=[{"role": "system", "content": "You are a helpful assistant."},
                  {"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in reply.choices[0].message.content


async def test_interrupting_the_notebook_helper_cancels_the_pull(bodhi_app, hub, api_url,
                                                                 jupyter_token, monkeypatch):
    import time
    import types

    import bodhi_jupyter
    from bodhi_jupyter.kernel import pulls as kernel_pulls

    hub.add(REPO, FILE, tiny_gguf(2_000_000), delay=0.02)
    monkeypatch.setenv("BODHI_BASE_URL", api_url)
    monkeypatch.setenv("BODHI_API_KEY", jupyter_token)

    def interrupt(_seconds):
        raise KeyboardInterrupt  # as Jupyter's "interrupt kernel" does mid-wait

    monkeypatch.setattr(kernel_pulls, "time", types.SimpleNamespace(
        sleep=interrupt, monotonic=time.monotonic))
    with pytest.raises(KeyboardInterrupt):
        await asyncio.to_thread(bodhi_jupyter.pull, REPO, FILE, progress=False)
    [pull] = bodhi_app.pulls.list()
    assert pull.state == "cancelled"
