"""Refusing prompts that cannot fit, without an engine: the GGUF vocabulary, one slot's
context, and the lower bound on a prompt's tokens."""

from __future__ import annotations

import json

import gguf
import pytest

from bodhi_jupyter.context_guard import ContextGuard, least_tokens, slot_context
from bodhi_jupyter.errors import BodhiAPIError
from bodhi_jupyter.inference import PreparedRequest
from bodhi_jupyter.models.registry import ResolvedModel, ServerOptions
from bodhi_jupyter.models.vocabulary import Vocabulary, read_vocabulary


def write_gguf(path, tokenizer: str, tokens: list[str]) -> str:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(4096)
    w.add_tokenizer_model(tokenizer)
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))  # an array of fixed-size values to skip past
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


def test_the_demo_models_longest_token_agrees_with_the_gguf_package(smollm2_path):
    vocab = read_vocabulary(str(smollm2_path))
    reader = gguf.GGUFReader(str(smollm2_path))  # the library's reading, slow but general
    tokens = reader.fields["tokenizer.ggml.tokens"]
    pieces = [bytes(tokens.parts[i]).decode() for i in tokens.data]
    assert vocab == Vocabulary("gpt2", len(pieces), max(len(p) for p in pieces))


def test_sentencepiece_counts_utf8_bytes_and_lossy_tokenizers_give_no_bound(tmp_path):
    spm = write_gguf(tmp_path / "spm.gguf", "llama", ["<unk>", "▁the", "▁éléphant", "a"])
    assert read_vocabulary(spm) == Vocabulary("llama", 4, len("▁éléphant".encode()))
    assert read_vocabulary(write_gguf(tmp_path / "bert.gguf", "bert",
                                      ["[CLS]", "##ing"])) is None
    (tmp_path / "not.gguf").write_bytes(b"GGUF" + b"\0" * 3)
    assert read_vocabulary(str(tmp_path / "not.gguf")) is None
    assert read_vocabulary(str(tmp_path / "missing.gguf")) is None


def model(ctx=2048, parallel=2, extra=()) -> ResolvedModel:
    return ResolvedModel("m", "/m.gguf", "path", ServerOptions(ctx, parallel,
                                                               extra_args=tuple(extra)))


@pytest.mark.parametrize("m, launcher, slot", [
    (model(), (), 1024),
    (model(extra=["--ctx-size", "4096"]), (), 2048),
    (model(extra=["-c=8192", "-np", "8"]), (), 1024),
    (model(), ["--parallel", "1"], 2048),
    (model(extra=["--parallel", "4"]), ["--parallel", "1"], 512),  # the alias's comes last
    (model(extra=["--kv-unified"]), (), 2048),  # one sequence may use all of it
    (model(ctx=0), (), None),  # the model's own size: unknown here
    (model(extra=["-c", "lots"]), (), None),
])
def test_slot_context_reads_the_command_line_as_the_engine_does(m, launcher, slot):
    assert slot_context(m, launcher) == slot


VOCAB = Vocabulary("gpt2", 100, 10)


def test_least_tokens_per_endpoint():
    chat = {"messages": [
        {"role": "system", "content": "s" * 15},
        {"role": "user", "content": [{"type": "text", "text": "é" * 10},
                                     {"type": "image_url", "image_url": {"url": "x" * 999}}]},
        {"role": "assistant", "content": "a" * 500},  # templates may drop it: not counted
    ]}
    assert least_tokens("chat", chat, VOCAB) == 4  # ceil((15 + 20) / 10)
    assert least_tokens("completions", {"prompt": "p" * 31}, VOCAB) == 4
    assert least_tokens("completions", {"prompt": ["p" * 5, "q" * 95]}, VOCAB) == 10
    assert least_tokens("completions", {"prompt": [1, 2, 3]}, VOCAB) == 3
    assert least_tokens("embeddings", {"input": [[1] * 7, "x" * 20]}, VOCAB) == 7
    anthropic = {"system": [{"type": "text", "text": "s" * 10}],
                 "messages": [{"role": "user", "content": [{"type": "text", "text": "u" * 21}]},
                              {"role": "assistant", "content": "a" * 500}]}
    assert least_tokens("messages", anthropic, VOCAB) == 4  # ceil((10 + 21) / 10)
    assert least_tokens("responses", {"input": "i" * 41, "instructions": "x" * 9}, VOCAB) == 5
    items = {"input": [{"role": "user", "content": [{"type": "input_text", "text": "t" * 30}]}]}
    assert least_tokens("responses", items, VOCAB) == 3


async def test_guard_refuses_only_what_cannot_fit(smollm2_path):
    vocab = read_vocabulary(str(smollm2_path))
    m = ResolvedModel("demo", str(smollm2_path), "package", ServerOptions(2048, 2))
    guard = ContextGuard()

    def chat(size: int) -> PreparedRequest:
        body = {"messages": [{"role": "user", "content": "x" * size}]}
        return PreparedRequest("chat", m, json.dumps(body).encode(), False, body)

    await guard.check(chat(1024 * vocab.longest_token_bytes))  # might fit: the engine decides
    with pytest.raises(BodhiAPIError) as caught:
        await guard.check(chat(1024 * vocab.longest_token_bytes + 1))
    err = caught.value
    assert (err.status, err.code, err.param, err.type) == (
        400, "context_length_exceeded", "messages", "invalid_request_error")
    assert "maximum context length is 1024 tokens" in err.message
    assert "at least 1025 tokens" in err.message


async def test_a_payload_no_longer_than_the_slot_is_let_through_unread(smollm2_path):
    """Fewer bytes than the slot has tokens: it fits whatever the vocabulary, which is then
    not even looked up (a stat of the model file on every request)."""
    m = ResolvedModel("demo", str(smollm2_path), "package", ServerOptions(2048, 2))
    guard = ContextGuard()

    async def no_lookup(path):
        raise AssertionError("the vocabulary was looked up")

    guard.vocabulary = no_lookup
    body = {"messages": [{"role": "user", "content": "x" * 900}]}
    payload = json.dumps(body).encode()
    assert len(payload) <= 1024
    await guard.check(PreparedRequest("chat", m, payload, False, body))
    body = {"messages": [{"role": "user", "content": "x" * 1100}]}
    with pytest.raises(AssertionError, match="looked up"):
        await guard.check(PreparedRequest("chat", m, json.dumps(body).encode(), False, body))
