"""Reading a model's hyper-parameters from its GGUF header, for checks made before an
engine is asked (e.g. embeddings ``dimensions``).

Why not ``gguf.GGUFReader``: it maps every tensor as well, which took 1.8 s of CPU for the
98 MB demo model on this machine; the few keys needed sit at the start of the header, so
this reader stops there (well under a millisecond). The format:
https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import functools
import os
import struct
from typing import BinaryIO

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    pass


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise GGUFError("truncated GGUF header")
    return data


def _string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", _read(f, 8))
    return _read(f, n).decode("utf-8", "replace")


def _value(f: BinaryIO, kind: int, keep: bool):
    if kind in _SCALARS:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:
        item_kind, count = struct.unpack("<IQ", _read(f, 12))
        if item_kind in _SCALARS and not keep:  # skip, e.g. a vocabulary's scores
            f.seek(struct.calcsize(_SCALARS[item_kind]) * count, os.SEEK_CUR)
            return None
        items = [_value(f, item_kind, keep) for _ in range(count)]
        return items if keep else None
    raise GGUFError(f"unknown GGUF value type {kind}")


def read_metadata(path: str, wanted: set[str] | None = None) -> dict:
    """The header's key/value pairs (only ``wanted`` ones, stopping once all are found)."""
    out: dict = {}
    with open(path, "rb") as f:
        if _read(f, 4) != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file")
        (version,) = struct.unpack("<I", _read(f, 4))
        if version < 2:
            raise GGUFError(f"GGUF version {version} is not supported")
        _tensors, kv_count = struct.unpack("<QQ", _read(f, 16))
        for _ in range(kv_count):
            key = _string(f)
            (kind,) = struct.unpack("<I", _read(f, 4))
            keep = wanted is None or key in wanted
            value = _value(f, kind, keep)
            if keep:
                out[key] = value
                if wanted is not None and wanted <= out.keys():
                    break
    return out


@functools.lru_cache(maxsize=64)
def _embedding_length(path: str, _mtime_ns: int, _size: int) -> int | None:
    arch = read_metadata(path, {"general.architecture"}).get("general.architecture")
    if not isinstance(arch, str):
        return None
    value = read_metadata(path, {f"{arch}.embedding_length"}).get(f"{arch}.embedding_length")
    return int(value) if isinstance(value, int) else None


def embedding_length(path: str) -> int | None:
    """The model's embedding size (``<arch>.embedding_length``), cached per file version;
    None when the header does not say. Reads the disk: call it off the event loop."""
    st = os.stat(path)
    return _embedding_length(path, st.st_mtime_ns, st.st_size)
