"""Fill in the middle, for ghost-text completion in notebook cells (``bodhi/v1/infill``).

llama-server's ``/infill`` wraps the text before and after the cursor (and chunks of
context from other cells) in the model's own fill-in-the-middle tokens. A model without
such tokens gets 501 "Infill is not supported by this model" there, so for it the same
request becomes a plain completion prompt (``/completion``: the context chunks, then the
prefix; the suffix cannot be shown to a model that was not trained to see it). Both
answer in the same shape (``content``, ``tokens_predicted``, ``timings``, ``stop``), to
which ``"mode": "infill" | "completion"`` is added so a client knows which it got.
"""

from __future__ import annotations

import dataclasses
import json
import re

from .models.metadata import ModelMetadata

INFILL, COMPLETION = "infill", "completion"
PATHS = {INFILL: "/infill", COMPLETION: "/completion"}

#: the fields that only /infill reads
_INFILL_FIELDS = ("input_prefix", "input_suffix", "input_extra", "prompt")
#: llama-server's answer for a model whose vocabulary has no FIM tokens (measured)
_NOT_SUPPORTED = re.compile(rb"infill is not supported", re.I)


def mode_for(meta: ModelMetadata | None) -> str:
    """Infill when the file names FIM tokens; unknown metadata tries infill (the engine's
    501 then falls back, see :func:`is_not_supported`)."""
    if meta is None:
        return INFILL
    return INFILL if "infill" in meta.capabilities else COMPLETION


def normalise(body: dict) -> dict:
    """``max_tokens`` (the OpenAI name, also an alias default) as llama-server's
    ``n_predict``; an explicit ``n_predict`` wins."""
    out = dict(body)
    most = out.pop("max_tokens", None)
    if "n_predict" not in out and most is not None:
        out["n_predict"] = most
    return out


def completion_prompt(body: dict) -> str:
    """The plain prompt for a model without FIM tokens: context chunks, prefix, and the
    start of the middle the client already chose (``prompt``)."""
    parts = [c["text"] for c in body.get("input_extra") or () if c.get("text")]
    head = "\n\n".join(p.rstrip("\n") for p in parts)
    text = (head + "\n\n" if head else "") + body.get("input_prefix", "")
    return text + body.get("prompt", "")


def completion_body(body: dict) -> dict:
    out = {k: v for k, v in body.items() if k not in _INFILL_FIELDS}
    out["prompt"] = completion_prompt(body)
    return out


def as_completion(request):
    """The same prepared request, sent as a plain completion prompt."""
    body = completion_body(request.body)
    return dataclasses.replace(request, body=body, payload=json.dumps(body).encode(),
                               path=PATHS[COMPLETION], mode=COMPLETION)


def is_not_supported(status: int, body: bytes) -> bool:
    """Whether an engine's answer to /infill says the model has no FIM tokens."""
    return status == 501 and bool(_NOT_SUPPORTED.search(body))


def with_mode(body: bytes, mode: str) -> bytes:
    """A whole answer with ``mode`` added (the engine's JSON, re-encoded)."""
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body
    if not isinstance(obj, dict):
        return body
    return json.dumps({"mode": mode, **obj}).encode()


class ModeTagger:
    """Adds ``"mode"`` to every ``data: {...}`` event of a stream as it passes. Whole
    lines go through at once; only a line still being received is held back, so no
    event reaches the client later than it would have."""

    def __init__(self, mode: str):
        self._tag = b'data: {"mode": ' + json.dumps(mode).encode() + b", "
        self._held = b""

    def __call__(self, piece: bytes) -> bytes:
        data = self._held + piece
        end = data.rfind(b"\n") + 1
        self._held = data[end:]
        lines = data[:end].split(b"\n")
        return b"\n".join(self._tag + line[7:] if line.startswith(b"data: {")
                          and line[7:].lstrip()[:1] not in (b"}", b"") else line
                          for line in lines)
