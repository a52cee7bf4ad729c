"""Router aliases: targets tried in order, with the fake engine (and a closed port as a
remote) failing on cue."""

from __future__ import annotations

import json

import pytest

from bodhi_jupyter.models.registry import InvalidAlias, validate_alias
from bodhi_jupyter.models.upstreams import parse_upstream

from ..remote_servers import closed_port_url, fake_server
from .usage_rows import usage_rows


@pytest.fixture
def bodhi_config(fake_engine, smollm2_path):
    target = str(smollm2_path)

    def failing(code: int) -> dict:
        return {"model": target, "server": {"extra_args": ["--fake-status", str(code)]}}

    return {
        "LlamaServerLauncher": {"llama_server_path": str(fake_engine), "threads": 0},
        "EngineSupervisor": {"keep_alive": -1, "stop_grace": 1.0, "max_loaded": 0,
                             "crash_backoff": 30},
        "ModelRegistry": {"aliases": {
            "ok": {"model": target}, "fails": failing(500), "refuses": failing(400),
            "broken": {"model": target, "server": {"extra_args": ["--fake-exit-on-start",
                                                                  "3"]}},
            "r-500": {"targets": ["fails", "ok"]},
            "r-start": {"targets": ["broken", "ok"]},
            "r-down": {"targets": ["down/m", "ok"]},
            "r-400": {"targets": ["refuses", "ok"]},
            "r-none": {"targets": ["fails", "down/m", "no-such-model", "r-500"]},
            "r-remote": {"targets": ["up/far", "ok"]},
        }},
    }


@pytest.fixture
def down(bodhi_app):
    """A remote upstream where nothing listens."""
    bodhi_app.upstreams.create(parse_upstream({"name": "down", "base_url": closed_port_url(),
                                               "models": ["m"]}))


def chat(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


async def test_a_5xx_a_failed_start_or_a_closed_port_moves_to_the_next(client, bodhi_app,
                                                                       down):
    for router in ("r-500", "r-start", "r-down"):
        resp = await client.post("chat/completions", json=chat(router))
        assert resp.status_code == 200, (router, resp.text)
        assert resp.headers["X-Bodhi-Target"] == "ok"
        assert resp.json()["choices"][0]["message"]["content"].startswith("fake reply")
    rows = await usage_rows(bodhi_app, "chat")
    assert [(r.model, r.status) for r in rows] == [("r-500", 200), ("r-start", 200),
                                                   ("r-down", 200)]
    assert all(r.completion_tokens > 0 for r in rows)


async def test_streams_fall_through_before_the_first_byte(client, down):
    events = []
    async with client.stream("POST", "chat/completions",
                             json=chat("r-down", stream=True, max_tokens=3)) as resp:
        assert resp.status_code == 200
        assert resp.headers["X-Bodhi-Target"] == "ok"
        async for line in resp.aiter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or ""
                   for e in events[:-1])
    assert text == "fake reply 1"


async def test_a_4xx_is_the_answer(client, bodhi_app):
    resp = await client.post("chat/completions", json=chat("r-400"))
    assert resp.status_code == 400
    assert resp.headers["X-Bodhi-Target"] == "refuses"
    assert resp.json()["error"]["message"] == "fake error 400"
    assert {e.model.id for e in bodhi_app.supervisor.engines.values()} == {"refuses"}


async def test_when_every_target_fails_the_502_lists_why(client, bodhi_app, down):
    resp = await client.post("chat/completions", json=chat("r-none"))
    assert resp.status_code == 502
    err = resp.json()["error"]
    assert err["code"] == "all_targets_failed"
    for name in ("fails", "down/m", "no-such-model", "r-500"):
        assert f"{name}:" in err["message"]
    assert "do not nest" in err["message"]
    assert resp.headers["X-Bodhi-Target"] == "r-500"  # the last one tried
    assert [(r.model, r.status) for r in await usage_rows(bodhi_app, "chat")] == [
        ("r-none", 502)]


async def test_a_remote_target_is_found_by_asking_its_upstream(client, bodhi_app, tmp_path):
    far = fake_server(tmp_path / "far.log", alias="far").wait_healthy(15)
    try:
        bodhi_app.upstreams.create(parse_upstream({"name": "up", "base_url": far.base_url}))
        resp = await client.post("chat/completions", json=chat("r-remote"))
        assert resp.status_code == 200 and resp.headers["X-Bodhi-Target"] == "up/far"
        assert resp.json()["model"] == "far"
        assert bodhi_app.supervisor.engines == {}
    finally:
        far.stop()


async def test_routers_are_listed(openai_client):
    ids = {m.id for m in (await openai_client.models.list()).data}
    assert {"r-500", "r-down", "ok"} <= ids


@pytest.mark.parametrize("spec, words", [
    ({"targets": []}, "1-16"),
    ({"targets": ["a b"]}, "1-16"),
    ({"targets": ["x"], "model": "y"}, "not both"),
    ({"targets": ["me"]}, "its own target"),
    ({"targets": ["a"], "request": {"temperature": 0}}, "only 'targets'"),
])
def test_router_specs_are_checked(spec, words):
    validate_alias("me", {"targets": ["a", "b"]})
    with pytest.raises(InvalidAlias, match=words):
        validate_alias("me", spec)
