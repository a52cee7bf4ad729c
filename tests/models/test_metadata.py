"""Model metadata from a GGUF header, read without mapping the tensors."""

from __future__ import annotations

import functools
import os
import struct

import gguf
import numpy as np
import pytest

from bodhi_jupyter.models.metadata import (GGUFError, ModelMetadata, embedding_length,
                                           read_metadata, read_model_metadata)


def reference_field(path, key):
    """What the gguf package reads (slowly: it parses every array element too)."""
    field = _reader(str(path)).fields[key]
    value = field.parts[field.data[0]]
    return bytes(value).decode() if field.types[0] == gguf.GGUFValueType.STRING \
        else value[0].item()


@functools.lru_cache(maxsize=1)
def _reader(path: str) -> gguf.GGUFReader:
    return gguf.GGUFReader(path)


def write_gguf(path, arch: str = "llama", template: str | None = None, tokens=None,
               kv: dict | None = None, file_type: int | None = None,
               tensors: dict | None = None) -> str:
    """A small GGUF written with the gguf package (tiny tensors: only the header matters)."""
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(4096)
    w.add_embedding_length(8)
    if file_type is not None:
        w.add_file_type(file_type)
    if template is not None:
        w.add_chat_template(template)
    if tokens is not None:
        w.add_tokenizer_model("gpt2")
        w.add_token_list(tokens)
    for key, value in (kv or {}).items():
        if isinstance(value, bool):
            w.add_bool(key, value)
        else:
            w.add_uint32(key, value)
    for name, data in (tensors or {"token_embd.weight": np.zeros((4, 8), np.float32)}).items():
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


def test_the_demo_model(smollm2_path):
    meta = read_model_metadata(smollm2_path)
    assert meta.architecture == reference_field(smollm2_path, "general.architecture") == "llama"
    assert meta.context_length == reference_field(smollm2_path, "llama.context_length") == 8192
    assert meta.embedding_length == reference_field(smollm2_path, "llama.embedding_length")
    assert meta.quantization == "Q4_1"  # general.file_type 3, as gguf.LlamaFileType names it
    assert meta.file_size == os.path.getsize(smollm2_path)
    assert meta.chat_template is True
    assert meta.template == reference_field(smollm2_path, "tokenizer.chat_template")
    assert meta.capabilities == ("chat", "completion")  # no FIM tokens, no tools in template
    # no general.parameter_count in the file: the sum of its tensor shapes
    assert meta.parameter_count == sum(int(t.n_elements) for t in _reader(str(smollm2_path))
                                       .tensors)
    assert 130_000_000 < meta.parameter_count < 140_000_000  # "135M"
    assert meta.fields()["capabilities"] == ["chat", "completion"]
    assert "template" not in meta.fields()


def test_reads_every_key_or_only_the_wanted(smollm2_path):
    everything = read_metadata(str(smollm2_path))
    assert everything["general.architecture"] == "llama"
    assert len(everything["tokenizer.ggml.tokens"]) > 1000  # arrays of strings are read
    assert read_metadata(str(smollm2_path), {"llama.context_length"}) == {
        "llama.context_length": everything["llama.context_length"]}
    assert embedding_length(str(smollm2_path)) == everything["llama.embedding_length"]


def test_a_base_model_without_a_template_can_only_complete(tmp_path):
    meta = read_model_metadata(write_gguf(tmp_path / "base-Q8_0.gguf"))
    assert meta.capabilities == ("completion",)
    assert meta.chat_template is False and meta.template is None
    assert meta.quantization == "Q8_0"  # no general.file_type: the file name's tag
    assert meta.parameter_count == 32


def test_tools_and_infill_come_from_the_template_and_the_fim_tokens(tmp_path):
    template = "{% if tools %}{{ tools | tojson }}{% endif %}{{ messages }}"
    by_key = read_model_metadata(write_gguf(
        tmp_path / "a.gguf", template=template, file_type=gguf.LlamaFileType.MOSTLY_Q4_K_M,
        kv={gguf.Keys.Tokenizer.FIM_PRE_ID: 1, gguf.Keys.Tokenizer.FIM_SUF_ID: 2,
            gguf.Keys.Tokenizer.FIM_MID_ID: 3}))
    assert by_key.capabilities == ("chat", "completion", "infill", "tools")
    assert by_key.quantization == "Q4_K_M"
    # older files name no FIM ids; llama.cpp then finds the tokens by their text
    by_text = read_model_metadata(write_gguf(
        tmp_path / "b.gguf", tokens=["<unk>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"]))
    assert by_text.capabilities == ("completion", "infill")
    # all three markers are needed, each a whole token (not part of a longer one)
    partial = read_model_metadata(write_gguf(
        tmp_path / "c.gguf", tokens=["<unk>", "x<fim_prefix>", "<fim_suffix>", "<fim_middle>"]))
    assert partial.capabilities == ("completion",)


@pytest.mark.parametrize("arch, kv", [
    ("bert", {}),
    ("qwen3", {"qwen3.pooling_type": 3}),  # a decoder trained for embeddings
    ("llama", {"llama.attention.causal": False}),
])
def test_encoders_and_pooled_models_are_embedding_only(tmp_path, arch, kv):
    meta = read_model_metadata(write_gguf(tmp_path / "e.gguf", arch=arch, kv=kv,
                                          template="{{ messages }}"))
    assert meta.capabilities == ("embedding",) and meta.embedding_only
    assert meta.context_length == 4096 and meta.embedding_length == 8


def test_cached_per_file_version(tmp_path):
    path = write_gguf(tmp_path / "m.gguf")
    first = read_model_metadata(path)
    assert read_model_metadata(path) is first  # same path, mtime and size: not read again
    write_gguf(path, template="{{ messages }}")
    os.utime(path, ns=(1, 1))  # a new version, even on a coarse clock
    assert read_model_metadata(path).chat_template is True


def test_a_split_model_counts_every_part(tmp_path):
    first = write_gguf(tmp_path / "big-00001-of-00002.gguf")  # 4 x 8 weights
    second = write_gguf(tmp_path / "big-00002-of-00002.gguf",
                        tensors={"output.weight": np.zeros((2, 8), np.float32)})
    meta = read_model_metadata(first)
    assert meta.file_size == os.path.getsize(first) + os.path.getsize(second)
    assert meta.parameter_count == 32 + 16
    os.truncate(second, 10)  # a broken part: the count is unknown, the size still adds up
    os.utime(first, ns=(2, 2))
    assert read_model_metadata(first).parameter_count is None


def test_a_file_that_is_not_gguf_is_an_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 20)
    with pytest.raises(GGUFError):
        read_model_metadata(bad)
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(GGUFError):
        read_model_metadata(tmp_path / "empty.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 5))  # promises 5 keys, has none
    with pytest.raises(GGUFError, match="truncated"):
        read_metadata(str(cut))
    whole = open(write_gguf(tmp_path / "whole.gguf", tokens=["a", "b"]), "rb").read()
    (tmp_path / "short.gguf").write_bytes(whole[:60])  # ends inside the keys
    with pytest.raises(GGUFError, match="truncated"):
        read_model_metadata(tmp_path / "short.gguf")


def test_unknown_is_all_nulls():
    from bodhi_jupyter.models.metadata import UNKNOWN_FIELDS

    assert set(UNKNOWN_FIELDS) == set(ModelMetadata().fields())
    assert all(v is None for v in UNKNOWN_FIELDS.values())


def test_reading_metadata_and_scanning_leave_numpy_out_of_the_server(converted_models_dir):
    """The Jupyter server imports the reader and scans at every start; numpy (25 MiB) loads
    only for a conversion, once per install."""
    import subprocess
    import sys

    from bodhi_jupyter.models.discovery import ModelDiscovery

    ModelDiscovery(converted_dir=str(converted_models_dir)).scan()  # converted once here
    code = ("import sys\n"
            "from bodhi_jupyter.models.discovery import ModelDiscovery\n"
            f"files = ModelDiscovery(converted_dir={str(converted_models_dir)!r}).scan()\n"
            "assert {'smollm2-135m-instruct', 'all-minilm-l6-v2'} <= set(files), files\n"
            "assert all(f.metadata is not None for f in files.values())\n"
            "print('numpy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
