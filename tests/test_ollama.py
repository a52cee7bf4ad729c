"""Ollama requests and replies translated to and from the OpenAI shapes, without HTTP."""

from __future__ import annotations

import json
import time

import pytest

from bodhi_jupyter import ollama
from bodhi_jupyter.errors import BodhiAPIError


def test_model_names_accept_ids_with_tags_and_latest():
    assert ollama.model_names("owner/repo:Q4_K_M") == ["owner/repo:Q4_K_M"]
    assert ollama.model_names("smol:latest") == ["smol:latest", "smol"]
    assert ollama.model_names(":latest") == [":latest"]


def test_chat_maps_options_format_images_and_tools():
    t = ollama.translate_chat({
        "model": "m", "format": "json", "think": False,
        "options": {"num_predict": 7, "temperature": 0.2, "stop": ["\n"], "seed": 3,
                    "num_ctx": 4096, "num_gpu": 1, "repeat_penalty": 1.1, "num_keep": 5},
        "messages": [
            {"role": "user", "content": "see", "images": ["iVBORw0KGgo="]},
            {"role": "assistant", "content": "",
             "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}]},
            {"role": "tool", "content": "42", "tool_name": "f"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]})
    b = t.body
    assert (t.endpoint, t.stream, t.load_only) == ("chat", True, False)  # streams by default
    assert b["stream_options"] == {"include_usage": True}
    assert (b["max_tokens"], b["temperature"], b["stop"], b["seed"]) == (7, 0.2, ["\n"], 3)
    assert b["repeat_penalty"] == 1.1 and b["n_keep"] == 5
    assert "num_ctx" not in b and "num_gpu" not in b and "options" not in b
    assert b["response_format"] == {"type": "json_object"}
    assert b["chat_template_kwargs"] == {"enable_thinking": False}
    assert b["messages"][0]["content"] == [
        {"type": "text", "text": "see"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    call = b["messages"][1]["tool_calls"][0]
    assert call["function"] == {"name": "f", "arguments": '{"x": 1}'}
    assert b["messages"][2] == {"role": "tool", "content": "42", "tool_call_id": call["id"]}
    assert b["tools"][0]["function"]["name"] == "f"


def test_fields_and_options_nothing_reads_are_ignored_as_ollama_does():
    t = ollama.translate_chat({"model": "m", "stream": False, "client_extra": 1,
                               "options": {"no_such_option": 1, "temperature": 0},
                               "messages": [{"role": "user", "content": "q", "x": 1}]})
    assert t.body == {"model": "m", "messages": [{"role": "user", "content": "q"}],
                      "temperature": 0, "stream": False}


def test_unlimited_num_predict_leaves_the_engines_limit():
    for n in (-1, -2):
        t = ollama.translate_chat({"model": "m", "stream": False, "messages": [],
                                   "options": {"num_predict": n}})
        assert "max_tokens" not in t.body and t.load_only and not t.stream


def test_schema_format_becomes_json_schema():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    t = ollama.translate_generate({"model": "m", "prompt": "p", "format": schema})
    assert t.body["response_format"] == {"type": "json_schema",
                                         "json_schema": {"name": "format", "schema": schema}}


def test_generate_raw_is_a_completion_and_otherwise_a_chat():
    raw = ollama.translate_generate({"model": "m", "prompt": "1, 2,", "raw": True,
                                     "stream": False})
    assert (raw.endpoint, raw.body["prompt"], raw.kind) == ("completions", "1, 2,", "generate")
    chat = ollama.translate_generate({"model": "m", "prompt": "hi", "system": "be brief"})
    assert chat.endpoint == "chat" and chat.body["messages"] == [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert ollama.translate_generate({"model": "m"}).load_only


@pytest.mark.parametrize("body, param", [
    ({"model": "m", "prompt": "x", "suffix": "y"}, "suffix"),
    ({"model": "m", "prompt": "x", "context": [1, 2]}, "context"),
    ({"model": "m", "prompt": "x", "options": {"temperature": "hot"}}, "options.temperature"),
    ({"model": "m", "prompt": "x", "options": {"top_k": 1.5}}, "options.top_k"),
    ({"model": "", "prompt": "x"}, "model"),
    ({"model": "m", "prompt": 3}, "prompt"),
    ({"model": "m", "prompt": "x", "images": "abc"}, "images"),
])
def test_bad_generate_requests_are_400s_naming_the_field(body, param):
    with pytest.raises(BodhiAPIError) as e:
        ollama.translate_generate(body)
    assert e.value.status == 400
    if param:
        assert e.value.param == param


def test_embed_and_embeddings_requests_and_replies():
    t = ollama.translate_embed({"model": "m", "input": ["a", "b"], "truncate": True})
    assert (t.endpoint, t.body, t.stream) == ("embeddings", {"model": "m",
                                                             "input": ["a", "b"]}, False)
    engine = {"data": [{"index": 1, "embedding": [0.0, 1.0]},
                       {"index": 0, "embedding": [1.0, 0.0]}],
              "usage": {"prompt_tokens": 4, "total_tokens": 4}}
    out = ollama.reply(t, "m", engine, ollama.Timing(time.perf_counter()))
    assert out["embeddings"] == [[1.0, 0.0], [0.0, 1.0]] and out["prompt_eval_count"] == 4
    legacy = ollama.translate_embed({"model": "m", "prompt": "a"}, legacy=True)
    assert legacy.body["input"] == "a"
    assert ollama.reply(legacy, "m", engine, ollama.Timing(0)) == {"embedding": [1.0, 0.0]}
    with pytest.raises(BodhiAPIError):
        ollama.translate_embed({"model": "m"})


def test_whole_chat_reply_has_ollamas_fields_and_nanoseconds():
    t = ollama.translate_chat({"model": "m", "stream": False,
                               "messages": [{"role": "user", "content": "q"}]})
    engine = {"choices": [{"finish_reason": "length", "message": {
        "role": "assistant", "content": "a",
        "tool_calls": [{"id": "c", "type": "function",
                        "function": {"name": "f", "arguments": '{"x": 1}'}}]}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3},
        "timings": {"prompt_n": 9, "prompt_ms": 1.5, "predicted_n": 3, "predicted_ms": 20.0}}
    out = ollama.reply(t, "m:latest", engine, ollama.Timing(time.perf_counter() - 1, 0.25))
    assert out["model"] == "m:latest" and out["done"] and out["done_reason"] == "length"
    assert out["message"]["content"] == "a"
    assert out["message"]["tool_calls"] == [{"function": {"name": "f", "arguments": {"x": 1}}}]
    assert (out["prompt_eval_count"], out["eval_count"]) == (9, 3)
    assert (out["prompt_eval_duration"], out["eval_duration"]) == (1_500_000, 20_000_000)
    assert out["load_duration"] == 250_000_000 and out["total_duration"] >= 1e9
    assert out["created_at"].endswith("Z")


def _sse(*events) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode())
                    + b"\n\n" for e in events)


def test_stream_becomes_ndjson_lines_even_when_cut_anywhere():
    t = ollama.translate_chat({"model": "m", "messages": [{"role": "user", "content": "q"}]})
    raw = _sse({"choices": [{"delta": {"role": "assistant", "content": ""}}]},
               {"choices": [{"delta": {"content": "Pa"}}]},
               {"choices": [{"delta": {"content": "ris"}}]},
               {"choices": [{"delta": {}, "finish_reason": "stop"}],
                "timings": {"prompt_n": 5, "prompt_ms": 2, "predicted_n": 2, "predicted_ms": 4}},
               {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
               b"[DONE]")
    translator = ollama.StreamTranslator(t, "m", ollama.Timing(time.perf_counter()))
    out = b"".join(translator.feed(raw[i:i + 7]) for i in range(0, len(raw), 7))
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["message"]["content"] for line in lines] == ["Pa", "ris", ""]
    assert [line["done"] for line in lines] == [False, False, True]
    last = lines[-1]
    assert (last["done_reason"], last["prompt_eval_count"], last["eval_count"]) == ("stop", 5, 2)
    assert last["eval_duration"] == 4_000_000 and translator.counts == (5, 2)
    assert translator.finish() == b""  # once


def test_generate_stream_and_an_engine_error_event():
    t = ollama.translate_generate({"model": "m", "prompt": "p", "raw": True})
    translator = ollama.StreamTranslator(t, "m", ollama.Timing(time.perf_counter()))
    out = translator.feed(_sse({"choices": [{"text": "x"}]},
                               {"error": {"message": "boom", "type": "server_error"}}))
    first, err = [json.loads(line) for line in out.splitlines()]
    assert first["response"] == "x" and err == {"error": "boom"}


def test_ollama_error_shape_leads_with_the_field():
    err = BodhiAPIError(400, "must be a number", param="options.temperature")
    assert err.ollama_body() == {"error": "options.temperature: must be a number"}


def test_model_facts_of_the_demo_model(smollm2_path):
    facts = ollama.model_facts(str(smollm2_path))
    entry = ollama.tag_entry("smol", str(smollm2_path), facts)
    assert entry["details"]["family"] == "llama" and entry["size"] > 0
    assert entry["details"]["quantization_level"] == "Q4_1"
    assert entry["details"]["parameter_size"] == "135M"
    assert ollama.model_facts("/no/such/file.gguf") == ollama.ModelMetadata()
    shown = ollama.show_reply("smol", str(smollm2_path), facts,
                              {"temperature": 0.2, "stop": ["a", "b"], "system_prompt": "S"})
    assert shown["parameters"] == 'stop "a"\nstop "b"\ntemperature 0.2'
    assert 'SYSTEM """S"""' in shown["modelfile"] and shown["capabilities"] == ["completion"]
    assert ollama.ollama_capabilities(("chat", "completion", "infill", "tools")) == [
        "completion", "insert", "tools"]
    assert shown["model_info"]["llama.embedding_length"] == 576


@pytest.mark.parametrize("count, text", [(134_515_008, "135M"), (1_543_714_304, "1.5B"),
                                         (7_241_732_096, "7.2B"), (70_553_706_496, "71B"),
                                         (None, "")])
def test_parameter_size_as_ollama_writes_it(count, text):
    assert ollama.parameter_size(count) == text


def test_pull_names_map_to_hub_repos_and_files():
    assert ollama.pull_target("hf.co/owner/repo:Q8_0") == ollama.PullTarget("owner/repo",
                                                                            None, "Q8_0")
    assert ollama.pull_target("owner/repo:sub/x.Q4_1.gguf") == ollama.PullTarget(
        "owner/repo", "sub/x.Q4_1.gguf")
    assert ollama.pull_target("huggingface.co/o/r:latest").quant is None
    for bad in ("llama3", "a/b/c", "/x"):
        with pytest.raises(BodhiAPIError):
            ollama.pull_target(bad)
    files = ["README.md", "m-Q4_K_M.gguf", "m-Q8_0.gguf", "mmproj-m-Q8_0.gguf",
             "big-Q2_K-00002-of-00002.gguf", "big-Q2_K-00001-of-00002.gguf"]
    assert ollama.pick_gguf(files, None) == "m-Q4_K_M.gguf"  # Ollama's default
    assert ollama.pick_gguf(files, "q8_0") == "m-Q8_0.gguf"
    assert ollama.pick_gguf(files, "Q2_K") == "big-Q2_K-00001-of-00002.gguf"
    assert ollama.pick_gguf(["only.gguf"], None) == "only.gguf"
    with pytest.raises(BodhiAPIError, match="Q3_K"):
        ollama.pick_gguf(files, "Q3_K")


def test_pull_progress_lines_say_only_what_changed():
    sent: dict = {}
    running = {"state": "running", "filename": "f.gguf", "bytes_total": 10, "bytes_done": 4}
    assert [line["status"] for line in ollama.pull_lines(running, sent)] == [
        "pulling manifest", "pulling f.gguf"]
    assert ollama.pull_lines(running, sent) == []
    done = {**running, "state": "done", "bytes_done": 10}
    lines = ollama.pull_lines(done, sent)
    assert lines[0]["completed"] == 10 and lines[-1] == {"status": "success"}
    failed = {"state": "failed", "error": {"message": "gated"}}
    assert ollama.pull_lines(failed, {"manifest": True}) == [{"error": "gated"}]


@pytest.mark.parametrize("keep_alive, unload", [
    (0, True), ("0", True), ("0s", True), ("0m", True), (0.0, True), (None, False),
    ("5m", False), (-1, False), ("soon", False)])
def test_keep_alive_zero_without_a_prompt_unloads(keep_alive, unload):
    t = ollama.translate_generate({"model": "m", "keep_alive": keep_alive} if keep_alive
                                  is not None else {"model": "m"})
    assert (t.load_only, t.unload) == (True, unload)
    assert not ollama.translate_generate({"model": "m", "prompt": "p", "keep_alive": 0}).unload
