"""``POST bodhi/v1/infill`` (ghost text in cells): the real engine, in both modes, and the
fake engine for what the real one cannot be made to do on cue (the 501 of a model that
llama.cpp finds without FIM tokens although its file seems to name them).

The demo model has no fill-in-the-middle tokens (its vocabulary has none: llama.cpp
answers /infill with 501), so it is served in "completion" mode. A copy of it whose
metadata names three of its special tokens as FIM prefix/suffix/middle makes llama.cpp's
real /infill run: the model was not trained for them, but the request path, the engine's
prompt format and the reply shape are the real ones."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from ..conftest import DEMO_MODEL_ID, demo_model_path
from .usage_rows import usage_rows

ADD = {"input_prefix": "def add(a, b):\n    return ", "input_suffix": "\n\nprint(add(1, 2))\n",
       "input_extra": [{"filename": "cell 1", "text": "import math\n"}],
       "n_predict": 12, "temperature": 0}


@pytest.fixture(scope="session")
def fim_model(tmp_path_factory):
    """The demo file with FIM token ids in its metadata (<reponame>, <file_sep>,
    <filename>); written once per session (~3 s)."""
    out = tmp_path_factory.mktemp("fim") / "smollm2-fim.gguf"
    subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_new_metadata", "--force",
                    "--special-token-by-id", "fim_pre", "4",
                    "--special-token-by-id", "fim_suf", "5",
                    "--special-token-by-id", "fim_mid", "6",
                    str(demo_model_path()), str(out)], check=True, capture_output=True)
    return out


async def mint(http, **body) -> str:
    resp = await http.post("app/tokens", json={"name": "t", **body})
    assert resp.status_code == 201, resp.text
    return resp.json()["token"]


async def sse(client, body, headers=None) -> tuple[httpx.Response, list[dict]]:
    events = []
    async with client.stream("POST", "infill", json=body, headers=headers) as resp:
        async for line in resp.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return resp, events


class TestRealEngine:
    @pytest.fixture
    def bodhi_config(self, fim_model):
        return {"ModelRegistry": {"aliases": {"smol-fim": {"model": str(fim_model)}}}}

    async def test_demo_model_has_no_fim_tokens_so_a_completion_prompt_serves(
            self, client, bodhi_app):
        resp = await client.post("infill", json={"model": DEMO_MODEL_ID, **ADD})
        assert resp.status_code == 200, resp.text
        reply = resp.json()
        assert reply["mode"] == "completion" and resp.headers["X-Bodhi-Infill-Mode"] == \
            "completion"
        assert reply["content"].strip() and reply["tokens_predicted"] > 0
        # the prompt the engine saw: the extra chunk, then the prefix (no suffix)
        assert reply["prompt"] == "import math\n\ndef add(a, b):\n    return "
        (row,) = await usage_rows(bodhi_app, "infill")
        assert (row.model, row.status, row.stream) == (DEMO_MODEL_ID, 200, False)
        assert row.completion_tokens == reply["tokens_predicted"] and row.prompt_tokens > 0

    async def test_a_model_with_fim_tokens_gets_the_engines_infill(self, client, bodhi_app):
        resp = await client.post("infill", json={"model": "smol-fim", **ADD})
        assert resp.status_code == 200, resp.text
        reply = resp.json()
        assert reply["mode"] == "infill"
        assert reply["content"] and reply["tokens_predicted"] > 0
        # llama.cpp's own FIM layout: <reponame> prefix <file_sep> suffix <filename>
        assert reply["prompt"].endswith("<reponame>def add(a, b):\n    return <file_sep>"
                                        "\n\nprint(add(1, 2))\n<filename>")
        (row,) = await usage_rows(bodhi_app, "infill")
        assert (row.model, row.status) == ("smol-fim", 200)
        assert row.completion_tokens == reply["tokens_predicted"]

    async def test_stream_tags_every_event_and_counts_usage(self, client, bodhi_app):
        resp, events = await sse(client, {"model": "smol-fim", **ADD, "n_predict": 4,
                                          "stream": True})
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert len(events) == 5 and all(e["mode"] == "infill" for e in events)
        assert [e["stop"] for e in events] == [False] * 4 + [True]
        assert "".join(e["content"] for e in events[:4])
        (row,) = await usage_rows(bodhi_app, "infill")
        assert (row.stream, row.status, row.completion_tokens) == (True, 200, 4)

    @pytest.mark.parametrize("body, param", [
        ({"input_prefix": "x"}, "model"),
        ({"model": DEMO_MODEL_ID, "input_prefix": 3}, "input_prefix"),
        ({"model": DEMO_MODEL_ID, "input_suffix": "x" * 262_145}, "input_suffix"),
        ({"model": DEMO_MODEL_ID, "input_extra": [{"filename": "a"}]}, "input_extra[0].text"),
        ({"model": DEMO_MODEL_ID, "input_extra": [{"filename": "c", "text": "t"}] * 33},
         "input_extra"),
        ({"model": DEMO_MODEL_ID, "input_extra": "cell 1"}, "input_extra"),
        ({"model": DEMO_MODEL_ID, "n_predict": -2}, "n_predict"),
        ({"model": DEMO_MODEL_ID, "temperature": 3}, "temperature"),
        ({"model": DEMO_MODEL_ID, "stream": "yes"}, "stream"),
    ])
    async def test_bad_requests_are_400_before_any_engine(self, client, bodhi_app, body,
                                                          param):
        resp = await client.post("infill", json=body)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["param"] == param
        assert bodhi_app.supervisor.engines == {}
        assert await usage_rows(bodhi_app, "infill") == []

    async def test_an_embedding_model_cannot_infill(self, client, bodhi_app):
        resp = await client.post("infill", json={"model": "all-minilm-l6-v2", **ADD})
        assert resp.status_code == 400
        assert resp.json()["error"]["code"] == "model_not_completion_capable"

    async def test_auth_scope_and_model_limits(self, api_url, http, bodhi_app):
        async with httpx.AsyncClient(base_url=api_url + "/", timeout=60) as c:
            resp = await c.post("infill", json={"model": DEMO_MODEL_ID, **ADD})
            assert resp.status_code == 401
            read = await mint(http, scope="read")
            resp = await c.post("infill", json={"model": DEMO_MODEL_ID, **ADD},
                                headers={"Authorization": f"Bearer {read}"})
            assert resp.status_code == 403
            only = await mint(http, scope="write", models=["smol-fim"])
            resp = await c.post("infill", json={"model": DEMO_MODEL_ID, **ADD},
                                headers={"Authorization": f"Bearer {only}"})
            assert resp.status_code == 403
            assert resp.json()["error"]["code"] == "model_not_allowed"
            resp = await c.post("infill", json={"model": "smol-fim", **ADD, "n_predict": 2},
                                headers={"Authorization": f"Bearer {only}"})
            assert resp.status_code == 200 and resp.json()["mode"] == "infill"
        (row,) = await usage_rows(bodhi_app, "infill")
        assert row.token_id is not None and row.model == "smol-fim"


class TestFakeEngine:
    @pytest.fixture
    def record(self, tmp_path):
        return tmp_path / "bodies.jsonl"

    @pytest.fixture
    def bodhi_config(self, fake_engine, fim_model, smollm2_path, record):
        rec = ["--fake-record", str(record)]
        return {
            "LlamaServerLauncher": {"llama_server_path": str(fake_engine), "threads": 0},
            "ModelRegistry": {"aliases": {
                "fim": {"model": str(fim_model), "server": {"extra_args": rec},
                        "request": {"max_tokens": 7}},
                # the file names FIM tokens, the engine finds none (llama.cpp's 501)
                "fim-refused": {"model": str(fim_model),
                                "server": {"extra_args": [*rec, "--fake-no-fim"]}},
                "plain": {"model": str(smollm2_path), "server": {"extra_args": rec}},
            }},
        }

    def sent(self, record) -> list[tuple[str, dict]]:
        return [(r["path"], r["body"]) for r in map(json.loads, record.read_text()
                                                    .splitlines())]

    async def test_infill_fields_go_to_the_engine_with_alias_defaults(self, client, record):
        resp = await client.post("infill", json={"model": "fim", **ADD, "n_predict": 3})
        assert resp.status_code == 200 and resp.json()["mode"] == "infill"
        assert resp.json()["content"] == "fake reply 1"
        resp = await client.post("infill", json={"model": "fim", "input_prefix": "x"})
        assert resp.json()["tokens_predicted"] == 7  # the alias's max_tokens, as n_predict
        (p1, b1), (p2, b2) = self.sent(record)
        assert p1 == p2 == "/infill"
        assert b1["input_extra"] == ADD["input_extra"] and b1["n_predict"] == 3
        assert b2["n_predict"] == 7 and "max_tokens" not in b2

    async def test_engine_without_fim_tokens_falls_back_to_a_completion_prompt(
            self, client, bodhi_app, record):
        resp = await client.post("infill", json={"model": "fim-refused", **ADD,
                                                 "prompt": "a"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["mode"] == "completion"
        (p1, _), (p2, b2) = self.sent(record)
        assert (p1, p2) == ("/infill", "/completion")
        assert b2["prompt"] == "import math\n\ndef add(a, b):\n    return a"
        assert not {"input_prefix", "input_suffix", "input_extra"} & set(b2)
        (row,) = await usage_rows(bodhi_app, "infill")
        assert (row.status, row.completion_tokens) == (200, 12)

    async def test_a_file_without_fim_tokens_goes_straight_to_completion(self, client,
                                                                         record):
        resp, events = await sse(client, {"model": "plain", "input_prefix": "x",
                                          "n_predict": 3, "stream": True})
        assert resp.headers["X-Bodhi-Infill-Mode"] == "completion"
        assert [e["mode"] for e in events] == ["completion"] * 4
        assert "".join(e["content"] for e in events) == "fake reply 1"
        assert [p for p, _ in self.sent(record)] == ["/completion"]

    async def test_other_engine_errors_pass_through(self, client, bodhi_app):
        resp = await client.post("infill", json={"model": "fim", "input_prefix": "[status=501]"})
        assert resp.status_code == 502  # a 501 that is not about FIM tokens: an engine fault
        resp = await client.post("infill", json={"model": "fim", "input_prefix": "[status=429]"})
        assert resp.status_code == 429
        rows = await usage_rows(bodhi_app, "infill")
        assert [r.status for r in rows] == [502, 429]

    async def test_crash_mid_stream_ends_with_an_error_event(self, client, bodhi_app):
        resp, events = await sse(client, {"model": "fim", "input_prefix": "[crash-after=2]",
                                          "n_predict": 6, "stream": True})
        assert [e.get("mode") for e in events[:2]] == ["infill", "infill"]
        assert events[-1]["error"]["code"] == "engine_error"
        (row,) = await usage_rows(bodhi_app, "infill")
        assert row.status == 502
