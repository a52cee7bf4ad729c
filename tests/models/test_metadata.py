"""Hyper-parameters from a GGUF header, read without mapping the tensors."""

from __future__ import annotations

import functools
import struct

import gguf
import pytest

from bodhi_jupyter.models.metadata import GGUFError, embedding_length, read_metadata


def reference_field(path, key):
    """What the gguf package reads (slowly: it maps every tensor too)."""
    field = _reader(str(path)).fields[key]
    value = field.parts[field.data[0]]
    return bytes(value).decode() if field.types[0] == gguf.GGUFValueType.STRING \
        else value[0].item()


@functools.lru_cache(maxsize=1)
def _reader(path: str) -> gguf.GGUFReader:
    return gguf.GGUFReader(path)


def test_embedding_length_matches_the_gguf_package(smollm2_path):
    arch = reference_field(smollm2_path, "general.architecture")
    assert embedding_length(str(smollm2_path)) == reference_field(
        smollm2_path, f"{arch}.embedding_length")


def test_reads_every_key_or_only_the_wanted(smollm2_path):
    everything = read_metadata(str(smollm2_path))
    assert everything["general.architecture"] == "llama"
    assert len(everything["tokenizer.ggml.tokens"]) > 1000  # arrays of strings are read
    assert read_metadata(str(smollm2_path), {"llama.context_length"}) == {
        "llama.context_length": everything["llama.context_length"]}


def test_a_file_that_is_not_gguf_is_an_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 20)
    with pytest.raises(GGUFError):
        embedding_length(str(bad))
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 5))  # promises 5 keys, has none
    with pytest.raises(GGUFError, match="truncated"):
        read_metadata(str(cut))
