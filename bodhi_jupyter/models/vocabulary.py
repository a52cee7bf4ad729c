"""How many bytes of text one token of a model can cover at most, read from its GGUF file.

That number turns a prompt's size into a lower bound on its token count
(``utf8_bytes / longest_token_bytes``), which is enough to refuse prompts that cannot fit
a context without asking the engine to tokenize them. Only the GGUF header is read
(``metadata.read_metadata``); the tensors are never touched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .metadata import GGUFError, read_metadata

#: tokenizers whose tokens cover the input text losslessly, so the bound holds: byte-level
#: BPE (every character of a token stands for one byte) and SentencePiece ("▁" for a space,
#: "<0xNN>" for a byte; a piece's UTF-8 length is at least what it covers). WordPiece and
#: Unigram tokenizers drop whitespace and normalise text, so no bound is derived for them.
LOSSLESS = {"gpt2": "chars", "llama": "utf8"}

_KEYS = {"tokenizer.ggml.model", "tokenizer.ggml.tokens"}


@dataclass(frozen=True)
class Vocabulary:
    tokenizer: str
    size: int
    longest_token_bytes: int


def read_vocabulary(path: str) -> Vocabulary | None:
    """The tokenizer facts of a GGUF file, or None when the file has none we can use (not
    GGUF, no token list, or a tokenizer the bound does not hold for)."""
    try:
        meta = read_metadata(path, _KEYS)
    except (OSError, GGUFError):
        return None
    tokenizer, tokens = meta.get("tokenizer.ggml.model"), meta.get("tokenizer.ggml.tokens")
    how = LOSSLESS.get(tokenizer) if isinstance(tokenizer, str) else None
    if how is None or not isinstance(tokens, list) or not tokens:
        return None
    if not all(isinstance(t, str) for t in tokens):
        return None
    if how == "chars":  # byte-level BPE: one character per byte covered
        most = max(map(len, tokens))
    else:
        most = max(len(t.encode("utf-8")) for t in tokens)
    return Vocabulary(tokenizer, len(tokens), most)


def file_key(path: str) -> tuple | None:
    """What identifies one version of a file, for caching what was read from it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return path, st.st_size, st.st_mtime_ns
