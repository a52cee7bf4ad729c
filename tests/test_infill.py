"""Fill in the middle without HTTP: the completion prompt for models without FIM tokens,
field names, and the mode tag on streams cut anywhere."""

from __future__ import annotations

import json

import pytest

from bodhi_jupyter import infill
from bodhi_jupyter.models.metadata import ModelMetadata


def test_mode_follows_the_files_capabilities():
    assert infill.mode_for(ModelMetadata(capabilities=("completion", "infill"))) == "infill"
    assert infill.mode_for(ModelMetadata(capabilities=("chat", "completion"))) == "completion"
    assert infill.mode_for(None) == "infill"  # unknown: the engine's 501 decides


def test_completion_prompt_is_context_then_prefix_and_drops_infill_fields():
    body = {"model": "m", "input_prefix": "def f():\n    return ", "input_suffix": "\nf()",
            "input_extra": [{"filename": "cell 1", "text": "import os\n\n"},
                            {"filename": "cell 2", "text": ""},
                            {"filename": "cell 3", "text": "x = 1"}],
            "prompt": "os.", "n_predict": 4}
    out = infill.completion_body(body)
    assert out == {"model": "m", "n_predict": 4,
                   "prompt": "import os\n\nx = 1\n\ndef f():\n    return os."}
    assert infill.completion_prompt({"input_prefix": "a"}) == "a"


def test_max_tokens_becomes_n_predict_unless_given():
    assert infill.normalise({"max_tokens": 5}) == {"n_predict": 5}
    assert infill.normalise({"max_tokens": 5, "n_predict": 2}) == {"n_predict": 2}
    assert infill.normalise({}) == {}


def test_whole_answers_get_the_mode_first():
    assert json.loads(infill.with_mode(b'{"content": "x"}', "completion")) == {
        "mode": "completion", "content": "x"}
    assert infill.with_mode(b"not json", "infill") == b"not json"
    assert infill.with_mode(b"[1]", "infill") == b"[1]"


def test_the_stream_tag_survives_any_cut_and_holds_only_an_unfinished_line():
    stream = (b'data: {"content": "a", "stop": false}\n\n'
              b'data: {"content": "b\\n", "stop": true, "timings": {}}\n\n')
    for cut in range(1, len(stream)):
        tag = infill.ModeTagger("infill")
        out = tag(stream[:cut]) + tag(stream[cut:])
        events = [json.loads(e[6:]) for e in out.decode().split("\n\n") if e]
        assert [e["mode"] for e in events] == ["infill", "infill"], cut
        assert [e["content"] for e in events] == ["a", "b\n"]
    tag = infill.ModeTagger("completion")
    assert tag(b'data: {"content": "a"}\n\ndata: {"con') == \
        b'data: {"mode": "completion", "content": "a"}\n\n'
    assert tag(b'tent": "b"}\n\n') == b'data: {"mode": "completion", "content": "b"}\n\n'
    assert infill.ModeTagger("infill")(b"data: {}\n\n") == b"data: {}\n\n"


async def test_the_gateway_picks_the_mode_and_refuses_remote_models(smollm2_path):
    from bodhi_jupyter.errors import BodhiAPIError
    from bodhi_jupyter.inference import InferenceGateway
    from bodhi_jupyter.models.registry import NO_SERVER, ResolvedModel, ServerOptions
    from bodhi_jupyter.models.upstreams import RemoteModel

    gateway = InferenceGateway(registry=None)
    body = {"model": "m", "input_prefix": "x = ", "max_tokens": 3}
    local = ResolvedModel("m", str(smollm2_path), "alias", ServerOptions(2048, 1),
                          metadata=ModelMetadata(capabilities=("completion", "infill")))
    prepared = await gateway.for_model("infill", dict(body), local)
    assert (prepared.upstream_path, prepared.mode) == ("/infill", "infill")
    assert json.loads(prepared.payload) == {"model": "m", "input_prefix": "x = ",
                                            "n_predict": 3}
    plain = ResolvedModel("m", str(smollm2_path), "alias", ServerOptions(2048, 1),
                          metadata=ModelMetadata(capabilities=("completion",)))
    prepared = await gateway.for_model("infill", dict(body), plain)
    assert (prepared.upstream_path, prepared.mode) == ("/completion", "completion")
    assert json.loads(prepared.payload) == {"model": "m", "prompt": "x = ", "n_predict": 3}
    remote = ResolvedModel("r", "", "remote", NO_SERVER,
                           remote=RemoteModel("r", "up", "gpt"))
    with pytest.raises(BodhiAPIError) as e:
        await gateway.for_model("infill", dict(body), remote)
    assert (e.value.status, e.value.code) == (400, "model_not_infill_capable")
