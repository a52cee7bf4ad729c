"""Scale-out: a bodhi server that fronts remote engines only. A "fleet" of real llama.cpp
servers (the project's own ``bodhi-llama-server`` with the demo model, behind an API key)
is declared in config (``UpstreamRegistry.upstreams``, the key by environment variable) on
a real ``jupyter server`` process with ``ModelRegistry.local_models = False``."""

from __future__ import annotations

import json
import time

import httpx
import openai
import psutil
import pytest

from ..conftest import DEMO_MODEL_ID
from ..live_server import TOKEN, jupyter  # noqa: F401  (jupyter is a fixture)
from ..remote_servers import llama_server

KEY = "sk-fleet-8d2b61c0f4e9a7"
PLAIN = [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "What is the capital of France?"}]


def start_remote_only(jupyter, tmp_path, monkeypatch, upstreams: dict,  # noqa: F811
                      aliases: dict | None = None):
    """A jupyter server configured in a config file, as a deployment would, with the fleet
    key only in its environment."""
    monkeypatch.setenv("FLEET_KEY", KEY)
    config = {"ModelRegistry": {"local_models": False, "aliases": aliases or {}},
              "UpstreamRegistry": {"upstreams": upstreams,
                                   "secret_key_file": str(tmp_path / "secret.key")}}
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
    proc, base, log, _env = jupyter("server")
    headers = {"Authorization": f"token {TOKEN}"}
    http = httpx.Client(base_url=base + "bodhi/", headers=headers, timeout=60)
    client = openai.OpenAI(base_url=base + "bodhi/v1", api_key=TOKEN, max_retries=0,
                           timeout=60)
    return proc, http, client, log


def local_engines(proc) -> list:
    """Every process the server started (it starts no kernel in these tests)."""
    return psutil.Process(proc.pid).children(recursive=True)


def ask(client, model: str, **kw) -> str:
    reply = client.chat.completions.create(model=model, messages=PLAIN, temperature=0,
                                           max_tokens=20, **kw)
    return reply.choices[0].message.content


def test_a_remote_only_server_fronts_a_llama_server_fleet(jupyter, tmp_path,  # noqa: F811
                                                          monkeypatch, smollm2_path):
    fleet = llama_server(smollm2_path, tmp_path / "fleet.log", KEY,
                         alias=DEMO_MODEL_ID).wait_healthy(90)
    try:
        proc, http, client, log = start_remote_only(jupyter, tmp_path, monkeypatch, {
            "fleet": {"base_url": fleet.base_url, "api_key_env": "FLEET_KEY"}})
        remote_id = f"fleet/{DEMO_MODEL_ID}"

        # only the fleet's model is listed: the packaged local models are not
        assert [m.id for m in client.models.list().data] == [remote_id]
        (upstream,) = http.get("app/upstreams").json()["data"]
        assert (upstream["name"], upstream["source"], upstream["has_api_key"]) == (
            "fleet", "config", True)
        assert http.delete("app/upstreams/fleet").status_code == 409  # config's, not ours

        assert "paris" in ask(client, remote_id).lower()
        stream = client.chat.completions.create(model=remote_id, messages=PLAIN,
                                                temperature=0, max_tokens=20, stream=True)
        pieces = [c.choices[0].delta.content for c in stream
                  if c.choices and c.choices[0].delta.content]
        assert len(pieces) >= 3 and "paris" in "".join(pieces).lower()
        resp = http.post("api/chat", json={"model": remote_id, "messages": PLAIN,
                                           "stream": False, "options": {"temperature": 0}})
        assert resp.status_code == 200, resp.text  # the Ollama API: the fleet answers too
        assert "paris" in resp.json()["message"]["content"].lower()

        # a local model is refused clearly, and nothing can make an engine start here
        with pytest.raises(openai.NotFoundError) as info:
            ask(client, DEMO_MODEL_ID)
        assert info.value.body["code"] == "model_not_found"
        assert "no local models" in info.value.body["message"]
        assert http.post("app/processes", json={"model": DEMO_MODEL_ID}).status_code == 404
        resp = http.post("app/aliases", json={"name": "mine", "model": DEMO_MODEL_ID})
        assert resp.status_code == 400 and "local_models" in resp.json()["error"]["message"]
        resp = http.post("app/models/pulls", json={"repo": "a/b", "filename": "m.gguf"})
        assert resp.status_code == 409 and resp.json()["error"]["code"] == "local_models_off"

        # usage under the caller, with the name clients use for the fleet's model
        me = http.get("app/user").json()["name"]
        usage = http.get("app/usage", params={"group_by": "user,model"}).json()["data"]
        assert [(u["user"], u["model"], u["requests"]) for u in usage] == [
            (me, remote_id, 3)]
        assert usage[0]["completion_tokens"] > 0 and usage[0]["errors"] == 0

        # the fleet goes away: a clean 502 naming the upstream; it comes back: served again
        fleet.stop()
        with pytest.raises(openai.APIStatusError) as info:
            ask(client, remote_id)
        assert info.value.status_code == 502
        assert info.value.body["code"] == "upstream_unreachable"
        assert "'fleet'" in info.value.body["message"]
        fleet = llama_server(smollm2_path, tmp_path / "fleet.log", KEY, alias=DEMO_MODEL_ID,
                             port=fleet.port).wait_healthy(90)
        assert "paris" in ask(client, remote_id).lower()

        assert http.get("app/processes").json()["data"] == []
        assert local_engines(proc) == []

        # the key: in no log, no database file, no command line
        logged = log.read_bytes()
        assert b"upstream fleet from config" in logged and b"$FLEET_KEY" in logged
        stored = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
        assert any(p.name.endswith(".sqlite") for p in stored)
        for where in [log, *stored]:
            assert KEY.encode() not in where.read_bytes(), where
        for p in (proc, fleet.proc):
            assert KEY not in " ".join(psutil.Process(p.pid).cmdline())
        http.close()
    finally:
        fleet.stop()


def test_a_router_across_two_fleet_servers_fails_over(jupyter, tmp_path,  # noqa: F811
                                                      monkeypatch, smollm2_path):
    fleets = [llama_server(smollm2_path, tmp_path / f"fleet-{i}.log", KEY)
              for i in range(2)]
    try:
        for f in fleets:
            f.wait_healthy(90)
        proc, http, client, _log = start_remote_only(
            jupyter, tmp_path, monkeypatch,
            {"a": {"base_url": fleets[0].base_url, "api_key_env": "FLEET_KEY"},
             "b": {"base_url": fleets[1].base_url, "api_key_env": "FLEET_KEY",
                   "models": ["demo"]}},
            aliases={"pool": {"targets": ["a/demo", "b/demo"]}})
        assert sorted(m.id for m in client.models.list().data) == ["a/demo", "b/demo",
                                                                   "pool"]

        def routed(**kw):
            raw = client.chat.completions.with_raw_response.create(
                model="pool", messages=PLAIN, temperature=0, max_tokens=20, **kw)
            reply = raw.parse()
            if kw.get("stream"):
                text = "".join(c.choices[0].delta.content or "" for c in reply if c.choices)
            else:
                text = reply.choices[0].message.content
            return raw.headers["x-bodhi-target"], text

        target, text = routed()
        assert target == "a/demo" and "paris" in text.lower()
        fleets[0].stop()  # one server of the fleet dies: the next target answers
        for kw in ({}, {"stream": True}):
            target, text = routed(**kw)
            assert target == "b/demo" and "paris" in text.lower()
        fleets[1].stop()
        deadline = time.monotonic() + 5
        with pytest.raises(openai.APIStatusError) as info:
            routed()
        assert time.monotonic() < deadline  # refused connections fail fast
        assert info.value.status_code == 502
        assert info.value.body["code"] == "all_targets_failed"
        assert "a/demo" in info.value.body["message"] and "b/demo" in info.value.body["message"]
        assert local_engines(proc) == []
        http.close()
    finally:
        for f in fleets:
            f.stop()
