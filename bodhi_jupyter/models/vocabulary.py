"""How many bytes of text one token of a model can cover at most, read from its GGUF file.

That number turns a prompt's size into a lower bound on its token count
(``utf8_bytes / longest_token_bytes``), which is enough to refuse prompts that cannot fit
a context without asking the engine to tokenize them.

Only the key/value header of the file is read (the tensors are never touched). The gguf
package's ``GGUFReader`` needs 1.9 s of CPU for SmolLM2's 49,152-token vocabulary because it
builds a numpy view per value; this reader walks the same header with ``struct`` in a few
tens of milliseconds, using the gguf package's value-type codes.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass

from gguf import GGUF_MAGIC, GGUFValueType

#: tokenizers whose tokens cover the input text losslessly, so the bound holds: byte-level
#: BPE (every character of a token stands for one byte) and SentencePiece ("▁" for a space,
#: "<0xNN>" for a byte; a piece's UTF-8 length is at least what it covers). WordPiece and
#: Unigram tokenizers drop whitespace and normalise text, so no bound is derived for them.
LOSSLESS = {"gpt2": "chars", "llama": "utf8"}

_FIXED = {GGUFValueType.UINT8: 1, GGUFValueType.INT8: 1, GGUFValueType.UINT16: 2,
          GGUFValueType.INT16: 2, GGUFValueType.UINT32: 4, GGUFValueType.INT32: 4,
          GGUFValueType.FLOAT32: 4, GGUFValueType.BOOL: 1, GGUFValueType.UINT64: 8,
          GGUFValueType.INT64: 8, GGUFValueType.FLOAT64: 8}


@dataclass(frozen=True)
class Vocabulary:
    tokenizer: str
    size: int
    longest_token_bytes: int


class _Header:
    def __init__(self, buf):
        self.buf = buf
        self.at = 0

    def u32(self) -> int:
        (v,) = struct.unpack_from("<I", self.buf, self.at)
        self.at += 4
        return v

    def u64(self) -> int:
        (v,) = struct.unpack_from("<Q", self.buf, self.at)
        self.at += 8
        return v

    def raw_string(self) -> bytes:
        n = self.u64()
        start, self.at = self.at, self.at + n
        return self.buf[start:self.at]

    def skip(self, kind: int) -> None:
        if kind == GGUFValueType.STRING:
            n = self.u64()
            self.at += n
        elif kind == GGUFValueType.ARRAY:
            item, count = self.u32(), self.u64()
            if item in _FIXED:
                self.at += _FIXED[item] * count
            else:
                for _ in range(count):
                    self.skip(item)
        else:
            self.at += _FIXED[GGUFValueType(kind)]


def read_vocabulary(path: str) -> Vocabulary | None:
    """The tokenizer facts of a GGUF file, or None when the file has none we can use (not
    GGUF, big-endian, no token list, or a tokenizer the bound does not hold for)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return _read(mm)
    except (OSError, ValueError, struct.error):
        return None


def _read(buf) -> Vocabulary | None:
    h = _Header(buf)
    if h.u32() != GGUF_MAGIC or h.u32() not in (2, 3):
        return None
    h.u64()  # tensor count
    tokenizer, longest, size = None, None, 0
    for _ in range(h.u64()):
        key, kind = h.raw_string(), h.u32()
        if key == b"tokenizer.ggml.model" and kind == GGUFValueType.STRING:
            tokenizer = h.raw_string().decode("utf-8", "replace")
        elif key == b"tokenizer.ggml.tokens" and kind == GGUFValueType.ARRAY:
            item, size = h.u32(), h.u64()
            if item != GGUFValueType.STRING:
                return None
            pieces = [h.raw_string() for _ in range(size)]
            longest = pieces
        else:
            h.skip(kind)
        if tokenizer is not None and longest is not None:
            break
    how = LOSSLESS.get(tokenizer or "")
    if how is None or not longest:
        return None
    if how == "chars":  # byte-level BPE: one character per byte covered
        most = max(len(p.decode("utf-8", "replace")) for p in longest)
    else:
        most = max(len(p) for p in longest)
    return Vocabulary(tokenizer, size, most)


def file_key(path: str) -> tuple | None:
    """What identifies one version of a file, for caching what was read from it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return path, st.st_size, st.st_mtime_ns
