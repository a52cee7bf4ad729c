"""A configured alias through the HTTP API: request defaults fill only what the request
leaves out, and server options reach the engine's command line."""

import pytest

from ..conftest import DEMO_MODEL_ID

QUESTION = [{"role": "user", "content": "Write a long story about a dragon."}]


@pytest.fixture
def bodhi_config():
    return {"ModelRegistry": {"aliases": {
        "terse": {"model": DEMO_MODEL_ID,
                  "request": {"max_tokens": 3, "temperature": 0},
                  "server": {"ctx_size": 1024, "parallel": 1}},
    }}}


async def test_alias_is_listed_and_applies_defaults(openai_client, bodhi_app):
    ids = [m.id for m in (await openai_client.models.list()).data]
    assert "terse" in ids and DEMO_MODEL_ID in ids

    short = await openai_client.chat.completions.create(model="terse", messages=QUESTION)
    assert short.model == "terse"
    assert short.usage.completion_tokens <= 3
    assert short.choices[0].finish_reason == "length"

    longer = await openai_client.chat.completions.create(model="terse", messages=QUESTION,
                                                          max_tokens=12)
    assert longer.usage.completion_tokens > 3

    (engine,) = bodhi_app.supervisor.engines.values()
    cmd = engine.command
    assert cmd[cmd.index("--ctx-size") + 1] == "1024"
    assert cmd[cmd.index("--parallel") + 1] == "1"
    assert cmd[cmd.index("--alias") + 1] == "terse"


async def test_config_alias_is_stored_in_the_database(bodhi_app):
    from sqlalchemy import select

    from bodhi_jupyter.store.tables import model_aliases

    with bodhi_app.database.read() as conn:
        rows = conn.execute(select(model_aliases)).all()
    assert [(r.name, r.model, r.source) for r in rows] == [("terse", DEMO_MODEL_ID, "config")]
    assert rows[0].request_defaults == {"max_tokens": 3, "temperature": 0}


# -- aliases made over bodhi/app/aliases ----------------------------------------------------

async def test_alias_api_crud_scopes_and_refusals(http, openai_client, bodhi_app, tmp_path):
    made = await http.post("app/aliases", json={
        "name": "quick", "model": DEMO_MODEL_ID, "request": {"max_tokens": 2},
        "server": {"extra_args": ["-t", "1"]}})
    assert made.status_code == 201, made.text
    assert made.json() == {"name": "quick", "model": DEMO_MODEL_ID,
                           "request": {"max_tokens": 2},
                           "server": {"extra_args": ["--threads", "1"]},
                           "source": "api", "targets": None}
    assert "quick" in [m.id for m in (await openai_client.models.list()).data]  # at once
    listed = (await http.get("app/aliases")).json()["data"]
    assert {(a["name"], a["source"]) for a in listed} == {("terse", "config"), ("quick", "api")}

    for flag in ("--host", "--port", "--api-key", "--log-file", "--slot-save-path", "--path",
                 "--model-url", "-hf", "--hf-repo", "--ssl-key-file", "--flash-attn"):
        resp = await http.post("app/aliases", json={
            "name": "bad", "model": DEMO_MODEL_ID, "server": {"extra_args": [flag, "x"]}})
        error = resp.json()["error"]
        assert resp.status_code == 400 and error["param"] == flag and flag in error["message"]
    outside = tmp_path / "t.jinja"
    outside.write_text("{{ x }}")
    link = tmp_path / "link.jinja"
    link.symlink_to(outside)
    for path in (outside, link):
        resp = await http.post("app/aliases", json={
            "name": "bad", "model": DEMO_MODEL_ID, "server": {"chat_template_file": str(path)}})
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "chat_template_file"
    resp = await http.post("app/aliases", json={"name": "bad", "model": DEMO_MODEL_ID,
                                                "request": {"temperature": 9}})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "request.temperature"
    assert (await http.get("app/aliases/bad")).status_code == 404

    assert (await http.post("app/aliases", json={"name": "terse", "model": DEMO_MODEL_ID})
            ).json()["error"]["code"] == "alias_exists"
    for resp in (await http.put("app/aliases/terse", json={"model": DEMO_MODEL_ID}),
                 await http.delete("app/aliases/terse")):
        assert resp.status_code == 409 and resp.json()["error"]["code"] == "alias_read_only"

    minted = (await http.post("app/tokens", json={"name": "w", "scope": "write"})).json()
    headers = {"Authorization": f"Bearer {minted['token']}"}
    assert (await http.get("app/aliases/quick", headers=headers)).status_code == 200
    assert (await http.get("app/aliases/export", headers=headers)).status_code == 200
    for resp in (await http.post("app/aliases", json={"name": "n", "model": DEMO_MODEL_ID},
                                 headers=headers),
                 await http.put("app/aliases/quick", json={"model": DEMO_MODEL_ID},
                                headers=headers),
                 await http.delete("app/aliases/quick", headers=headers),
                 await http.post("app/aliases/import", content=b"[]", headers=headers)):
        assert resp.status_code == 403

    options = (await http.get("app/aliases/options")).json()
    assert {"flag": "--threads", "aliases": ["-t"], "value": "int",
            "help": "CPU threads for generation"} in options["flags"]
    assert "extra_args" in options["server_options"]

    exported = await http.get("app/aliases/export")
    assert exported.headers["Content-Type"].startswith("application/yaml")
    assert (await http.delete("app/aliases/quick")).status_code == 204
    assert "quick" not in [m.id for m in (await openai_client.models.list()).data]
    result = (await http.post("app/aliases/import", content=exported.content,
                              headers={"Content-Type": "application/yaml"})).json()
    assert result == {"created": ["quick"], "updated": [],
                      "skipped": [{"name": "terse", "reason": "a config alias (read-only)"}]}
    assert (await http.get("app/aliases/quick")).json()["server"] == {
        "extra_args": ["--threads", "1"]}
    bad = await http.post("app/aliases/import", content=b"{ not: [yaml",
                          headers={"Content-Type": "application/yaml"})
    assert bad.status_code == 400


def last_value(cmd: list[str], flag: str) -> str:
    return cmd[len(cmd) - 1 - cmd[::-1].index(flag) + 1]


async def test_allowed_flags_reach_the_real_engine_and_a_change_unloads_it(
        http, openai_client, bodhi_app):
    made = await http.post("app/aliases", json={
        "name": "slim", "model": DEMO_MODEL_ID, "request": {"max_tokens": 3, "temperature": 0},
        "server": {"ctx_size": 1024, "parallel": 1,
                   "extra_args": ["--threads", "1", "--batch-size=64"]}})
    assert made.status_code == 201, made.text
    reply = await openai_client.chat.completions.create(model="slim", messages=QUESTION)
    assert reply.usage.completion_tokens <= 3
    (engine,) = bodhi_app.supervisor.engines.values()
    assert last_value(engine.command, "--threads") == "1"  # the last one wins (argparse)
    assert last_value(engine.command, "--batch-size") == "64"

    changed = await http.put("app/aliases/slim", json={
        "model": DEMO_MODEL_ID, "request": {"max_tokens": 3, "temperature": 0},
        "server": {"ctx_size": 1024, "parallel": 1, "extra_args": ["-t", "2"]}})
    assert changed.status_code == 200, changed.text
    assert not bodhi_app.supervisor.engines  # unloaded: the next request gets the new flags
    await openai_client.chat.completions.create(model="slim", messages=QUESTION)
    (engine,) = bodhi_app.supervisor.engines.values()
    assert last_value(engine.command, "--threads") == "2"
    assert "--batch-size" not in engine.command
