"""What a GGUF file says about its model — architecture, size, quantisation, context, chat
template and what it can do — read from the header alone, once per file version.

The header is parsed here rather than with ``gguf.GGUFReader``, which builds numpy views
for every element of every array: on the 98 MB demo model (49 152 tokens, 48 900 merges)
it took 1.8 s of CPU on a quiet machine and 3.9 s wall on the shared 2-core one, whichever
way it is used (its cost is in the key/value part, ``_build_fields``, not in the tensors,
so no lower-level piece of it helps). This reader walks the same bytes with
``struct.unpack_from`` over a read-only map, skips arrays nobody asked for and reads the
tensor infos that follow the keys (names, shapes, types; no tensor data): about 20 ms
for the demo model on that machine (best of 5; the earlier hand-written key reader took
100 ms). The ``gguf`` package supplies what the format means: value types
(``GGUFValueType``), key names (``Keys``), file types (``LlamaFileType``), all from its
``constants`` module, loaded on its own: ``import gguf`` runs the package's ``__init__``,
which imports numpy and the reader and writer — 25 MiB more in the Jupyter server.
Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import asyncio
import functools
import mmap
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path


def _gguf_constants():
    """``gguf.constants`` (standard library only) without ``gguf/__init__`` and its numpy."""
    import importlib.util
    import sys

    if "gguf" in sys.modules:  # loaded anyway (a conversion, a test): share it
        return sys.modules["gguf"]
    spec = importlib.util.find_spec("gguf")  # finds the package without running it
    path = Path(list(spec.submodule_search_locations)[0]) / "constants.py"
    module_spec = importlib.util.spec_from_file_location("bodhi_jupyter._gguf_constants", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


gguf = _gguf_constants()

_V = gguf.GGUFValueType
_SCALARS = {_V.UINT8: "<B", _V.INT8: "<b", _V.UINT16: "<H", _V.INT16: "<h",
            _V.UINT32: "<I", _V.INT32: "<i", _V.FLOAT32: "<f", _V.BOOL: "<?",
            _V.UINT64: "<Q", _V.INT64: "<q", _V.FLOAT64: "<d"}
_SCALARS = {int(k): (v, struct.calcsize(v)) for k, v in _SCALARS.items()}
_STRING, _ARRAY = int(_V.STRING), int(_V.ARRAY)

#: architectures that are encoders: they embed, and cannot generate text
ENCODERS = {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3",
            "modern-bert", "neo-bert", "eurobert", "t5encoder"}

#: token texts llama.cpp recognises as fill-in-the-middle markers when a file names none
_FIM_TEXTS = {
    "pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
            "▁<PRE>", "<|code_prefix|>"),
    "suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
            "▁<SUF>", "<|code_suffix|>"),
    "mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
            "▁<MID>", "<|code_middle|>"),
}
_FIM_KEYS = {"pre": gguf.Keys.Tokenizer.FIM_PRE_ID, "suf": gguf.Keys.Tokenizer.FIM_SUF_ID,
             "mid": gguf.Keys.Tokenizer.FIM_MID_ID}
_TOOLS = re.compile(r"\btools\b")
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


class GGUFError(ValueError):
    pass


@dataclass(frozen=True)
class Header:
    """The key/value pairs (those asked for) and the tensor infos of a GGUF header."""

    values: dict
    #: (name, shape, ggml type) of each tensor, when asked for
    tensors: list = field(default_factory=list)
    #: raw bytes of each string array that was skipped, for exact-token lookups
    string_arrays: dict = field(default_factory=dict)


class _Cursor:
    def __init__(self, buf, path: str):
        self.buf, self.pos, self.path = buf, 0, path

    def unpack(self, fmt: str, size: int):
        if self.pos + size > len(self.buf):
            raise GGUFError(f"truncated GGUF header in {self.path}")
        out = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return out

    def string(self, decode: bool = True):
        (n,) = self.unpack("<Q", 8)
        end = self.pos + n
        if end > len(self.buf):
            raise GGUFError(f"truncated GGUF header in {self.path}")
        raw = self.buf[self.pos:end]
        self.pos = end
        return raw.decode("utf-8", "replace") if decode else None

    def value(self, kind: int, keep: bool):
        if kind in _SCALARS:
            fmt, size = _SCALARS[kind]
            return self.unpack(fmt, size)[0]
        if kind == _STRING:
            return self.string(keep)
        if kind == _ARRAY:
            item_kind, count = self.unpack("<IQ", 12)
            if item_kind in _SCALARS and not keep:
                self.pos += _SCALARS[item_kind][1] * count
                if self.pos > len(self.buf):
                    raise GGUFError(f"truncated GGUF header in {self.path}")
                return None
            if keep:
                return [self.value(item_kind, True) for _ in range(count)]
            if item_kind == _STRING:  # the hot loop: a vocabulary's tokens and merges
                buf, pos, unpack = self.buf, self.pos, struct.unpack_from
                for _ in range(count):
                    pos += 8 + unpack("<Q", buf, pos)[0]
                if pos > len(buf):
                    raise GGUFError(f"truncated GGUF header in {self.path}")
                self.pos = pos
                return None
            for _ in range(count):
                self.value(item_kind, False)
            return None
        raise GGUFError(f"unknown GGUF value type {kind} in {self.path}")


def read_header(path: str, wanted: set[str] | None = None, tensors: bool = False,
                arrays: bool = True, raw_arrays: frozenset[str] = frozenset()) -> Header:
    """Parse a GGUF header: every key (or only ``wanted``; arrays only when ``arrays``),
    the tensor infos if asked, and the raw bytes of the arrays named in ``raw_arrays``.
    Never reads tensor data."""
    with open(path, "rb") as f:
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            raise GGUFError(f"{path} is not a GGUF file") from None
    try:
        return _parse(_Cursor(buf, path), wanted, tensors, arrays, raw_arrays)
    except struct.error:  # a length that points past the end
        raise GGUFError(f"truncated GGUF header in {path}") from None
    finally:
        buf.close()


def _parse(c: _Cursor, wanted, tensors: bool, arrays: bool, raw_arrays) -> Header:
    if len(c.buf) < 4 or c.buf[:4] != b"GGUF":
        raise GGUFError(f"{c.path} is not a GGUF file")
    c.pos = 4
    (version,) = c.unpack("<I", 4)
    if version < 2:
        raise GGUFError(f"GGUF version {version} is not supported")
    n_tensors, n_kv = c.unpack("<QQ", 16)
    values: dict = {}
    raws: dict = {}
    for _ in range(n_kv):
        key = c.string()
        (kind,) = c.unpack("<I", 4)
        keep = (wanted is None or key in wanted) and (arrays or kind != _ARRAY)
        start = c.pos
        value = c.value(kind, keep)
        if keep:
            values[key] = value
        if key in raw_arrays:
            raws[key] = bytes(c.buf[start:c.pos])
        if not tensors and wanted is not None and wanted <= values.keys() \
                and raw_arrays <= raws.keys():
            break
    infos = []
    if tensors:
        for _ in range(n_tensors):
            name = c.string()
            (n_dims,) = c.unpack("<I", 4)
            shape = c.unpack(f"<{n_dims}Q", 8 * n_dims)
            ggml_type, _offset = c.unpack("<IQ", 12)
            infos.append((name, shape, ggml_type))
    return Header(values, infos, raws)


def read_metadata(path: str, wanted: set[str] | None = None) -> dict:
    """The header's key/value pairs (only ``wanted`` ones, stopping once all are found)."""
    return read_header(path, wanted).values


@dataclass(frozen=True)
class ModelMetadata:
    """What bodhi/v1/models shows about a model file (None where the file does not say)."""

    architecture: str | None = None
    parameter_count: int | None = None
    quantization: str | None = None
    file_size: int | None = None
    context_length: int | None = None
    embedding_length: int | None = None
    chat_template: bool = False
    capabilities: tuple[str, ...] = ()
    template: str | None = field(default=None, repr=False)

    @property
    def embedding_only(self) -> bool:
        return self.capabilities == ("embedding",)

    def fields(self) -> dict:
        """The JSON fields of a model object (``template`` is not among them: it is long)."""
        return {"architecture": self.architecture, "parameter_count": self.parameter_count,
                "quantization": self.quantization, "file_size": self.file_size,
                "context_length": self.context_length,
                "embedding_length": self.embedding_length,
                "chat_template": self.chat_template, "capabilities": list(self.capabilities)}


#: the fields of a model nobody could read (a remote one, or a file that is not GGUF)
UNKNOWN_FIELDS = {**ModelMetadata().fields(), "chat_template": None, "capabilities": None}


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _file_type_name(value) -> str | None:
    try:
        name = gguf.LlamaFileType(int(value) & ~int(gguf.LlamaFileType.GUESSED)).name
    except (TypeError, ValueError):
        return None
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def _other_parts(path: str) -> list[str]:
    """The later parts of a split GGUF named by its first (``x-00001-of-00003.gguf``)."""
    m = _SPLIT.search(path)
    if not m or m.group(1) != "00001":
        return []
    return [f"{path[:m.start()]}-{i:05d}-of-{m.group(2)}.gguf"
            for i in range(2, int(m.group(2)) + 1)]


def _parameters(tensors) -> int:
    return sum(functools.reduce(int.__mul__, shape, 1) for _, shape, _ in tensors)


def _has_fim(values: dict, tokens_raw: bytes | None) -> bool:
    for part, key in _FIM_KEYS.items():
        if _int(values.get(key)) is not None:
            continue
        if not tokens_raw or not any(
                struct.pack("<Q", len(t.encode())) + t.encode() in tokens_raw
                for t in _FIM_TEXTS[part]):
            return False
    return True


def _describe(path: str, size: int) -> ModelMetadata:
    from .discovery import quant_of  # discovery imports this module

    tokens_key = gguf.Keys.Tokenizer.LIST
    header = read_header(path, tensors=True, arrays=False,
                         raw_arrays=frozenset({tokens_key}))
    v = header.values
    arch = v.get(gguf.Keys.General.ARCHITECTURE)
    arch = arch if isinstance(arch, str) else None
    a = functools.partial(str.format, arch=arch or "")
    # no converter writes a parameter count that we know of (general.size_label is "135M");
    # the tensor infos after the keys give it exactly, and for a split file each part
    # lists its own tensors
    params = _int(v.get("general.parameter_count"))
    parts = _other_parts(path)
    if params is None and header.tensors:
        params = _parameters(header.tensors)
        for part in parts:
            try:
                params += _parameters(read_header(part, set(), tensors=True).tensors)
            except (OSError, GGUFError):
                params = None  # a part missing or broken: unknown rather than wrong
                break
    for part in parts:
        try:
            size += os.stat(part).st_size
        except OSError:
            pass
    quant = _file_type_name(v.get(gguf.Keys.General.FILE_TYPE)) \
        if gguf.Keys.General.FILE_TYPE in v else None
    template = v.get(gguf.Keys.Tokenizer.CHAT_TEMPLATE)
    template = template if isinstance(template, str) and template.strip() else None
    encoder = (arch in ENCODERS or a(gguf.Keys.LLM.POOLING_TYPE) in v
               or v.get(a(gguf.Keys.Attention.CAUSAL)) is False)
    if encoder:
        caps: tuple[str, ...] = ("embedding",)
    else:
        caps = tuple(c for c, on in (
            ("chat", template is not None), ("completion", True),
            ("infill", _has_fim(v, header.string_arrays.get(tokens_key))),
            ("tools", bool(template and _TOOLS.search(template)))) if on)
    return ModelMetadata(
        architecture=arch, parameter_count=params,
        quantization=quant or quant_of(os.path.basename(path)),
        file_size=size,
        context_length=_int(v.get(a(gguf.Keys.LLM.CONTEXT_LENGTH))),
        embedding_length=_int(v.get(a(gguf.Keys.LLM.EMBEDDING_LENGTH))),
        chat_template=template is not None, capabilities=caps, template=template)


@functools.lru_cache(maxsize=256)
def _cached(path: str, _mtime_ns: int, size: int) -> ModelMetadata:
    return _describe(path, size)


def read_model_metadata(path: str | os.PathLike) -> ModelMetadata:
    """The model's metadata, cached per (path, mtime, size). Reads the disk (the header
    only): call it off the event loop. OSError or GGUFError when the file cannot be read."""
    path = str(Path(path))
    st = os.stat(path)
    return _cached(path, st.st_mtime_ns, st.st_size)


async def describe(path: str | os.PathLike) -> ModelMetadata:
    """``read_model_metadata`` in a thread."""
    return await asyncio.to_thread(read_model_metadata, path)


def embedding_length(path: str) -> int | None:
    """The model's embedding size (``<arch>.embedding_length``); None when the header does
    not say. Reads the disk: call it off the event loop."""
    return read_model_metadata(path).embedding_length
