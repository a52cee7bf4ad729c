"""Model discovery: quantisation tags, the Hugging Face cache layout, model directories and
packaged models."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest

from bodhi_jupyter.models.discovery import ModelDiscovery, quant_of


@pytest.mark.parametrize("filename, quant", [
    ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
    ("qwen2.5-0.5b-instruct-q8_0.gguf", "Q8_0"),
    ("mistral-7b-instruct-v0.2.Q5_K_S.gguf", "Q5_K_S"),
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
    ("gemma-2-2b-it-IQ2_XXS.gguf", "IQ2_XXS"),
    ("Meta-Llama-3.1-8B-Instruct-IQ4_NL.gguf", "IQ4_NL"),
    ("Qwen3-4B-UD-Q4_K_XL.gguf", "Q4_K_XL"),
    ("phi-4-F16.gguf", "F16"),
    ("gemma-3-1b-it-BF16.gguf", "BF16"),
    ("nomic-embed-text-v1.5.f32.gguf", "F32"),
    ("Qwen2.5-7B-Instruct-Q4_K_M-00001-of-00003.gguf", "Q4_K_M"),
    ("Meta-Llama-3.1-70B-Instruct-Q8_0-00002-of-00002.gguf", "Q8_0"),
    ("Q6_K.gguf", "Q6_K"),
    ("Qwen2.5-0.5B-Instruct.gguf", None),  # "Qwen2" is a name, not a tag
    ("model.gguf", None),
    ("model-00001-of-00002.gguf", None),
])
def test_quant_of(filename, quant):
    assert quant_of(filename) == quant


@pytest.mark.parametrize("filename, quant", [
    ("gpt-oss-20b-mxfp4.gguf", "MXFP4"),
    ("BitNet-b1.58-2B-4T-TQ1_0.gguf", "TQ1_0"),
])
def test_quant_of_newer_tags(filename, quant):
    assert quant_of(filename) == quant


# -- Hugging Face cache ------------------------------------------------------------------

def put_in_hf_cache(hf_home: Path, repo: str, filename: str, data: bytes = b"GGUF",
                    snapshot: str = "a" * 40) -> Path:
    """Lay a file out as huggingface_hub does: content in blobs/<sha256>, the snapshot entry
    a relative symlink to it."""
    owner, name = repo.split("/")
    repo_dir = hf_home / "hub" / f"models--{owner}--{name}"
    blob = repo_dir / "blobs" / hashlib.sha256(data + filename.encode()).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    link = repo_dir / "snapshots" / snapshot / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(snapshot)
    return link


def test_hf_cache_files_get_repo_and_quant_ids(_isolated_hf_home):
    hf = _isolated_hf_home
    q4 = put_in_hf_cache(hf, "bartowski/Llama-3.2-1B-Instruct-GGUF",
                         "Llama-3.2-1B-Instruct-Q4_K_M.gguf", b"x" * 1234)
    put_in_hf_cache(hf, "bartowski/Llama-3.2-1B-Instruct-GGUF",
                    "Llama-3.2-1B-Instruct-IQ2_XXS.gguf")
    put_in_hf_cache(hf, "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
                    "qwen2.5-0.5b-instruct-q8_0.gguf")
    put_in_hf_cache(hf, "someone/plain-GGUF", "plain-model.gguf")
    (hf / "hub" / "models--not-a-repo").mkdir()  # junk next to the repos is ignored
    (hf / "hub" / "version.txt").write_text("1")

    found = ModelDiscovery(include_packages=False).scan()  # hf_home from $HF_HOME

    assert set(found) == {
        "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        "bartowski/Llama-3.2-1B-Instruct-GGUF:IQ2_XXS",
        "Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q8_0",
        "someone/plain-GGUF:plain-model",  # no tag: the file stem
    }
    f = found["bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"]
    assert f.path == str(q4) and f.source == "hf-cache"
    assert f.size == 1234  # of the blob, not of the symlink
    assert f.request_defaults == {}


def test_hf_cache_split_models_offer_only_the_first_part(_isolated_hf_home):
    repo = "Qwen/Qwen2.5-7B-Instruct-GGUF"
    parts = [put_in_hf_cache(_isolated_hf_home, repo,
                             f"qwen2.5-7b-instruct-q4_k_m-0000{i}-of-00003.gguf", bytes([i]))
             for i in (1, 2, 3)]
    # unsloth-style: splits in a sub-folder of the snapshot
    sub = put_in_hf_cache(_isolated_hf_home, "unsloth/Big-GGUF",
                          "Q8_0/Big-Q8_0-00001-of-00002.gguf", b"1")
    put_in_hf_cache(_isolated_hf_home, "unsloth/Big-GGUF",
                    "Q8_0/Big-Q8_0-00002-of-00002.gguf", b"2")

    found = ModelDiscovery(include_packages=False).scan()

    assert set(found) == {f"{repo}:Q4_K_M", "unsloth/Big-GGUF:Q8_0"}
    assert found[f"{repo}:Q4_K_M"].path == str(parts[0])
    assert found["unsloth/Big-GGUF:Q8_0"].path == str(sub)


def test_hf_cache_skips_vision_projectors(_isolated_hf_home):
    repo = "ggml-org/gemma-3-4b-it-GGUF"
    put_in_hf_cache(_isolated_hf_home, repo, "gemma-3-4b-it-Q4_K_M.gguf")
    put_in_hf_cache(_isolated_hf_home, repo, "mmproj-model-f16.gguf")
    put_in_hf_cache(_isolated_hf_home, repo, "gemma-3-4b-it-MMPROJ-Q8_0.gguf")

    found = ModelDiscovery(include_packages=False).scan()

    assert set(found) == {f"{repo}:Q4_K_M"}


def test_hf_cache_prefers_the_current_revision(_isolated_hf_home):
    repo = "owner/Model-GGUF"
    put_in_hf_cache(_isolated_hf_home, repo, "model-Q4_K_M.gguf", b"old", snapshot="0" * 40)
    new = put_in_hf_cache(_isolated_hf_home, repo, "model-Q4_K_M.gguf", b"new",
                          snapshot="f" * 40)  # written last: refs/main -> ffff...

    found = ModelDiscovery(include_packages=False).scan()

    assert found[f"{repo}:Q4_K_M"].path == str(new)


def test_explicit_hf_home_trait(tmp_path):
    home = tmp_path / "elsewhere"
    put_in_hf_cache(home, "o/r", "m-Q4_0.gguf")

    assert set(ModelDiscovery(hf_home=str(home), include_packages=False).scan()) == {"o/r:Q4_0"}
    assert ModelDiscovery(include_packages=False).scan() == {}  # $HF_HOME is empty


# -- model directories ---------------------------------------------------------------------

def test_model_dirs_use_the_file_stem(tmp_path):
    models = tmp_path / "models"
    (models / "sub").mkdir(parents=True)
    (models / "Phi-3-mini-4k-instruct-q4.gguf").write_bytes(b"12345")
    (models / "sub" / "tiny.gguf").write_bytes(b"1")
    (models / "sub" / "big-Q8_0-00001-of-00002.gguf").write_bytes(b"1")
    (models / "sub" / "big-Q8_0-00002-of-00002.gguf").write_bytes(b"2")
    (models / "sub" / "mmproj-tiny-f16.gguf").write_bytes(b"1")
    (models / "notes.txt").write_text("not a model")

    found = ModelDiscovery(model_dirs=[str(models)], include_packages=False).scan()

    assert set(found) == {"Phi-3-mini-4k-instruct-q4", "tiny", "big-Q8_0"}
    assert found["tiny"].source == "directory"
    assert found["tiny"].path == str(models / "sub" / "tiny.gguf")
    assert found["Phi-3-mini-4k-instruct-q4"].size == 5
    assert found["big-Q8_0"].path == str(models / "sub" / "big-Q8_0-00001-of-00002.gguf")


def test_missing_model_dir_is_a_warning(tmp_path, caplog):
    present = tmp_path / "present"
    present.mkdir()
    (present / "ok.gguf").write_bytes(b"1")
    missing = tmp_path / "missing"

    with caplog.at_level(logging.WARNING):
        found = ModelDiscovery(model_dirs=[str(missing), str(present)],
                               include_packages=False).scan()

    assert set(found) == {"ok"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(missing) in m and "does not exist" in m for m in warnings), warnings


# -- packaged models -----------------------------------------------------------------------

def test_packaged_demo_model(smollm2_path):
    found = ModelDiscovery().scan()

    demo = found["smollm2-135m-instruct"]
    assert demo.source == "package"
    assert Path(demo.path) == smollm2_path
    assert demo.size == smollm2_path.stat().st_size > 0
    assert demo.request_defaults == {"system_prompt": "You are a helpful assistant."}


def test_packaged_models_can_be_hidden(smollm2_path):
    assert "smollm2-135m-instruct" not in ModelDiscovery(include_packages=False).scan()


def test_request_defaults_are_not_shared_between_scans(smollm2_path):
    first = ModelDiscovery().scan()["smollm2-135m-instruct"]
    first.request_defaults["system_prompt"] = "changed"
    again = ModelDiscovery().scan()["smollm2-135m-instruct"]
    assert again.request_defaults == {"system_prompt": "You are a helpful assistant."}


def test_hf_repo_with_two_files_of_one_quant_names_them_by_file(_isolated_hf_home):
    snap = _isolated_hf_home / "hub" / "models--acme--Pair-GGUF" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    for name in ("alpha-Q4_K_M.gguf", "beta-Q4_K_M.gguf"):
        (snap / name).write_bytes(b"GGUF")
    found = ModelDiscovery(hf_home=str(_isolated_hf_home), include_packages=False).scan()
    assert set(found) == {"acme/Pair-GGUF:alpha-Q4_K_M", "acme/Pair-GGUF:beta-Q4_K_M"}
