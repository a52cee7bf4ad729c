"""The Ollama API (``bodhi/api/*``) in terms of the OpenAI-compatible engine: Ollama
requests become the chat, completion and embedding requests the inference pipeline already
serves, and the engine's replies (whole or streamed) become Ollama's JSON and NDJSON.

Pure translation, no HTTP: the handlers in :mod:`.handlers.ollama` feed it. Ollama's
request fields are checked by the JSON Schemas here (what ``bodhi/openapi.json`` publishes
for these routes); the translated request is then checked again by the OpenAI schemas, so
the engine only ever sees what the OpenAI routes would send it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import fastjsonschema

from .errors import invalid
from .models.metadata import ModelMetadata, read_model_metadata
from .schemas import INT32_MAX, schema_error

# -- request schemas ---------------------------------------------------------------------------
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_NUM = {"type": "number"}


def _int(lo: int, hi: int = INT32_MAX) -> dict:
    return {"type": "integer", "minimum": lo, "maximum": hi}


def _num(lo: float, hi: float) -> dict:
    return {"type": "number", "minimum": lo, "maximum": hi}


#: every option the ollama client's ``Options`` names, typed: sampling ones are mapped,
#: load-time ones (num_gpu, num_thread, ...) are left to the server's own configuration.
#: Like Ollama, fields and options that nothing reads are ignored (clients send their own
#: extras), so the Ollama schemas allow additional properties; the types of known ones are
#: strict, and the translated request meets the OpenAI schemas as well.
OPTIONS = {"type": "object", "properties": {
    "numa": _BOOL, "num_ctx": _int(0), "num_batch": _int(0), "num_gpu": _int(-1),
    "main_gpu": _int(0), "low_vram": _BOOL, "f16_kv": _BOOL, "logits_all": _BOOL,
    "vocab_only": _BOOL, "use_mmap": _BOOL, "use_mlock": _BOOL, "embedding_only": _BOOL,
    "num_thread": _int(0), "num_keep": _int(-1), "seed": _int(-1, 2**32 - 1),
    "num_predict": _int(-2), "top_k": _int(0), "top_p": _num(0, 1), "min_p": _num(0, 1),
    "tfs_z": _NUM, "typical_p": _num(0, 1), "repeat_last_n": _int(-1),
    "temperature": _num(0, 2), "repeat_penalty": _num(0, 100),
    "presence_penalty": _num(-2, 2), "frequency_penalty": _num(-2, 2),
    "mirostat": _int(0, 2), "mirostat_tau": _num(0, 100), "mirostat_eta": _num(0, 100),
    "penalize_newline": _BOOL,
    "stop": {"type": "array", "items": _STR, "description": "an array of strings"}}}

#: Ollama options -> the OpenAI/llama-server field of the same meaning
_OPTION_FIELDS = {
    "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
    "seed": "seed", "stop": "stop", "repeat_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
    "typical_p": "typical_p", "repeat_last_n": "repeat_last_n", "mirostat": "mirostat",
    "mirostat_tau": "mirostat_tau", "mirostat_eta": "mirostat_eta", "num_keep": "n_keep",
}

_MODEL = {"type": "string", "minLength": 1, "maxLength": 1000,
          "description": "a non-empty string"}
_KEEP_ALIVE = {"description": "a duration: seconds or a string such as '5m'",
               "anyOf": [{"type": "number"}, {"type": "string", "maxLength": 64}]}
_FORMAT = {"description": "'json' or a JSON Schema object",
           "anyOf": [{"enum": ["", "json"]}, {"type": "object"}]}
_THINK = {"description": "a boolean or 'low', 'medium', 'high'",
          "anyOf": [{"type": "boolean"}, {"enum": ["low", "medium", "high"]}]}
_IMAGES = {"type": "array", "items": {"type": "string", "minLength": 1},
           "description": "an array of base64-encoded images"}
_TOOL_CALL = {"type": "object", "required": ["function"], "properties": {
    "function": {"type": "object", "required": ["name"], "properties": {
        "name": _STR, "arguments": {"type": "object"}, "index": {"type": "integer"}}}}}
_MESSAGE = {"type": "object", "required": ["role"],
            "properties": {
                "role": {"enum": ["system", "user", "assistant", "tool"]},
                "content": {"type": ["string", "null"]}, "thinking": {"type": ["string", "null"]},
                "images": {"anyOf": [_IMAGES, {"type": "null"}]},
                "tool_name": {"type": ["string", "null"]},
                "tool_calls": {"anyOf": [{"type": "array", "items": _TOOL_CALL},
                                         {"type": "null"}]}}}
_TOOL = {"type": "object", "required": ["function"], "properties": {
    "type": {"const": "function"},
    "function": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "minLength": 1}, "description": _STR,
        "parameters": {"type": "object"}}}}}
_COMMON = {"model": _MODEL, "stream": _BOOL, "options": OPTIONS, "keep_alive": _KEEP_ALIVE,
           "format": _FORMAT, "think": _THINK, "logprobs": _BOOL, "top_logprobs": _int(0, 20)}

SCHEMAS = {
    "OllamaChatRequest": {
        "type": "object", "required": ["model"],
        "properties": {**_COMMON, "messages": {"type": "array", "items": _MESSAGE},
                       "tools": {"type": "array", "items": _TOOL}}},
    "OllamaGenerateRequest": {
        "type": "object", "required": ["model"],
        "properties": {**_COMMON, "prompt": _STR, "suffix": _STR, "system": _STR,
                       "template": _STR, "raw": _BOOL, "images": _IMAGES,
                       "context": {"type": "array", "items": _int(0)}}},
    "OllamaEmbedRequest": {
        "type": "object", "required": ["model", "input"],
        "properties": {"model": _MODEL, "truncate": _BOOL, "options": OPTIONS,
                       "keep_alive": _KEEP_ALIVE, "dimensions": _int(1),
                       "input": {"description": "a string or an array of strings",
                                 "anyOf": [_STR, {"type": "array", "minItems": 1,
                                                  "items": _STR}]}}},
    "OllamaEmbeddingsRequest": {
        "type": "object", "required": ["model"],
        "properties": {"model": _MODEL, "prompt": _STR, "options": OPTIONS,
                       "keep_alive": _KEEP_ALIVE}},
    "OllamaShowRequest": {
        "type": "object",
        "description": "an object naming the model in 'model' (or the older 'name')",
        "anyOf": [{"required": ["model"]}, {"required": ["name"]}],
        "properties": {"model": _MODEL, "name": _MODEL, "verbose": _BOOL}},
    "OllamaPullRequest": {
        "type": "object",
        "anyOf": [{"required": ["model"]}, {"required": ["name"]}],
        "properties": {"model": _MODEL, "name": _MODEL, "insecure": _BOOL, "stream": _BOOL}},
}


@functools.cache
def _validator(name: str):
    return fastjsonschema.compile(copy.deepcopy(SCHEMAS[name]))


def validate(name: str, body: dict) -> None:
    """A 400 naming the first field of an Ollama request that breaks its schema."""
    try:
        _validator(name)(body)
    except fastjsonschema.JsonSchemaValueException as e:
        raise schema_error(body, e) from None


# -- names -------------------------------------------------------------------------------------
def model_names(name: str) -> list[str]:
    """The ids an Ollama model name may mean, in order: the name as sent (ids may hold a
    ``:`` already, ``owner/repo:Q4_K_M``), then without Ollama's default tag ``:latest``."""
    names = [name]
    if name.endswith(":latest") and len(name) > len(":latest"):
        names.append(name[:-len(":latest")])
    return names


# -- requests ----------------------------------------------------------------------------------
@dataclass
class Translated:
    """An Ollama request as the OpenAI endpoint and body that serve it."""

    endpoint: str  # "chat", "completions" or "embeddings"
    body: dict
    stream: bool
    kind: str  # the Ollama route: "chat", "generate", "embed", "embeddings"
    load_only: bool = False  # no prompt: Ollama's way to load a model
    unload: bool = False  # ... and with keep_alive 0, to unload it


def sampling(options: dict | None) -> dict:
    """Ollama ``options`` as OpenAI/llama-server fields. ``num_predict`` -1 (no limit) and
    -2 (fill the context) both leave the engine's own limit; ``num_ctx`` and the load-time
    options cannot change a running engine (its context is the alias's ``ctx_size``)."""
    out = {}
    for key, value in (options or {}).items():
        target = _OPTION_FIELDS.get(key)
        if target is not None:
            out[target] = value
    predict = (options or {}).get("num_predict")
    if isinstance(predict, int) and predict > 0:
        out["max_tokens"] = predict
    return out


def _response_format(fmt) -> dict | None:
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}}
    return None


_IMAGE_MAGIC = (("iVBOR", "image/png"), ("/9j/", "image/jpeg"), ("R0lG", "image/gif"),
                ("UklG", "image/webp"))


def image_part(data: str) -> dict:
    """An Ollama image (bare base64) as an OpenAI ``image_url`` part with a data URL."""
    if data.startswith("data:"):
        url = data
    else:
        mime = next((m for prefix, m in _IMAGE_MAGIC if data.startswith(prefix)), "image/png")
        url = f"data:{mime};base64,{data}"
    return {"type": "image_url", "image_url": {"url": url}}


def chat_message(m: dict, i: int) -> dict:
    """One Ollama message as an OpenAI one."""
    out: dict = {"role": m["role"], "content": m.get("content") or ""}
    if m.get("images"):
        parts = [{"type": "text", "text": out["content"]}] if out["content"] else []
        out["content"] = parts + [image_part(img) for img in m["images"]]
    if m.get("tool_calls"):
        out["tool_calls"] = [
            {"id": f"call_{i}_{j}", "type": "function",
             "function": {"name": c["function"]["name"],
                          "arguments": json.dumps(c["function"].get("arguments") or {})}}
            for j, c in enumerate(m["tool_calls"])]
    if m["role"] == "tool":
        out["tool_call_id"] = m.get("tool_name") or "tool"
    return out


def _link_tool_results(messages: list[dict]) -> list[dict]:
    """Ollama names a tool result by the tool (``tool_name``); OpenAI by the call's id:
    each result answers the latest call of that tool."""
    last_call: dict[str, str] = {}
    for m in messages:
        for call in m.get("tool_calls") or []:
            last_call[call["function"]["name"]] = call["id"]
        if m["role"] == "tool":
            m["tool_call_id"] = last_call.get(m["tool_call_id"], m["tool_call_id"])
    return messages


def unloads(keep_alive) -> bool:
    """``keep_alive`` 0 (``0``, ``"0"``, ``"0s"``, ``"0m"``...) with no prompt: Ollama's way
    to unload a model now."""
    if isinstance(keep_alive, (int, float)) and not isinstance(keep_alive, bool):
        return keep_alive == 0
    if isinstance(keep_alive, str):
        digits = keep_alive.strip().rstrip("smh")
        try:
            return float(digits) == 0
        except ValueError:
            return False
    return False


def _common(body: dict, out: dict, stream: bool) -> dict:
    out.update(sampling(body.get("options")))
    fmt = _response_format(body.get("format"))
    if fmt is not None:
        out["response_format"] = fmt
    if isinstance(body.get("think"), bool):
        out["chat_template_kwargs"] = {"enable_thinking": body["think"]}
    if body.get("logprobs"):
        out["logprobs"] = True
        if body.get("top_logprobs"):
            out["top_logprobs"] = body["top_logprobs"]
    out["stream"] = stream
    if stream:
        out["stream_options"] = {"include_usage": True}
    return out


def translate_chat(body: dict) -> Translated:
    validate("OllamaChatRequest", body)
    stream = body.get("stream", True)  # Ollama streams unless told not to
    messages = body.get("messages") or []
    out = {"model": body["model"], "messages": _link_tool_results(
        [chat_message(m, i) for i, m in enumerate(messages)])}
    if body.get("tools"):
        out["tools"] = [{"type": "function", **{k: v for k, v in t.items() if k != "type"}}
                        for t in body["tools"]]
    return Translated("chat", _common(body, out, stream), stream, "chat",
                      load_only=not messages,
                      unload=not messages and unloads(body.get("keep_alive")))


def translate_generate(body: dict) -> Translated:
    """``raw`` prompts go to the completion endpoint as they are; others through the
    model's chat template (what Ollama's default template does), with ``system`` first."""
    validate("OllamaGenerateRequest", body)
    for unsupported in ("suffix", "template", "context"):
        if body.get(unsupported):
            raise invalid(f"'{unsupported}' is not supported by this server", param=unsupported)
    stream = body.get("stream", True)
    prompt = body.get("prompt") or ""
    load_only = not prompt and not body.get("images")
    unload = load_only and unloads(body.get("keep_alive"))
    if body.get("raw"):
        if body.get("images"):
            raise invalid("'images' need the chat template; leave 'raw' out", param="images")
        out = {"model": body["model"], "prompt": prompt}
        return Translated("completions", _common(body, out, stream), stream, "generate",
                          load_only=load_only, unload=unload)
    messages = []
    if body.get("system"):
        messages.append({"role": "system", "content": body["system"]})
    messages.append(chat_message({"role": "user", "content": prompt,
                                  "images": body.get("images")}, 0))
    out = {"model": body["model"], "messages": messages}
    return Translated("chat", _common(body, out, stream), stream, "generate",
                      load_only=load_only, unload=unload)


def translate_embed(body: dict, legacy: bool = False) -> Translated:
    """``embed`` (``input``: one string or many) or the older ``embeddings`` (``prompt``)."""
    if legacy:
        validate("OllamaEmbeddingsRequest", body)
        out = {"model": body["model"], "input": body.get("prompt") or ""}
        return Translated("embeddings", out, False, "embeddings")
    validate("OllamaEmbedRequest", body)
    out = {"model": body["model"], "input": body["input"]}
    if body.get("dimensions") is not None:
        out["dimensions"] = body["dimensions"]
    return Translated("embeddings", out, False, "embed")


# -- replies -----------------------------------------------------------------------------------
def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


_DONE_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop",
                 "content_filter": "stop", None: "stop"}


@dataclass
class Timing:
    """Ollama's durations (nanoseconds) from llama-server's ``timings`` and our clock."""

    started: float  # perf_counter at the request's start
    load_s: float = 0.0  # waiting for the engine (its start, when it was not loaded)

    def fields(self, usage: dict | None, timings: dict | None) -> dict:
        usage, timings = usage or {}, timings or {}
        prompt_n = timings.get("prompt_n", usage.get("prompt_tokens", 0))
        eval_n = timings.get("predicted_n", usage.get("completion_tokens", 0))
        ns = 1_000_000
        return {
            "total_duration": int((time.perf_counter() - self.started) * 1e9),
            "load_duration": int(self.load_s * 1e9),
            "prompt_eval_count": int(usage.get("prompt_tokens", prompt_n) or 0),
            "prompt_eval_duration": int(float(timings.get("prompt_ms", 0)) * ns),
            "eval_count": int(usage.get("completion_tokens", eval_n) or 0),
            "eval_duration": int(float(timings.get("predicted_ms", 0)) * ns),
        }


def tool_calls(calls: list | None) -> list | None:
    """OpenAI tool calls (arguments as a JSON string) as Ollama's (arguments an object)."""
    if not calls:
        return None
    out = []
    for c in calls:
        fn = c.get("function") or {}
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except ValueError:
            args = {"arguments": fn.get("arguments")}
        out.append({"function": {"name": fn.get("name"), "arguments": args}})
    return out


def logprobs(choice: dict) -> list | None:
    """OpenAI's ``logprobs.content`` as Ollama's ``logprobs`` (the same entries, without
    the byte lists)."""
    content = (choice.get("logprobs") or {}).get("content")
    if not isinstance(content, list):
        return None
    return [{"token": e.get("token"), "logprob": e.get("logprob"),
             **({"top_logprobs": [{"token": t.get("token"), "logprob": t.get("logprob")}
                                  for t in e["top_logprobs"]]} if e.get("top_logprobs")
                else {})}
            for e in content if isinstance(e, dict)]


def _message(delta: dict) -> dict:
    msg = {"role": "assistant", "content": delta.get("content") or ""}
    if delta.get("reasoning_content"):
        msg["thinking"] = delta["reasoning_content"]
    calls = tool_calls(delta.get("tool_calls"))
    if calls:
        msg["tool_calls"] = calls
    return msg


def reply(t: Translated, model: str, engine_body: dict, timing: Timing) -> dict:
    """A whole Ollama reply from a whole OpenAI one."""
    usage = engine_body.get("usage")
    if t.endpoint == "embeddings":
        vectors = [d["embedding"] for d in sorted(engine_body.get("data", []),
                                                  key=lambda d: d.get("index", 0))]
        if t.kind == "embeddings":
            return {"embedding": vectors[0] if vectors else []}
        stats = timing.fields(usage, None)
        return {"model": model, "embeddings": vectors,
                "total_duration": stats["total_duration"],
                "load_duration": stats["load_duration"],
                "prompt_eval_count": stats["prompt_eval_count"]}
    choice = (engine_body.get("choices") or [{}])[0]
    out = {"model": model, "created_at": now_iso()}
    if t.kind == "chat":
        out["message"] = _message(choice.get("message") or {})
    elif t.endpoint == "chat":
        out["response"] = (choice.get("message") or {}).get("content") or ""
    else:
        out["response"] = choice.get("text") or ""
    if logprobs(choice) is not None:
        out["logprobs"] = logprobs(choice)
    out["done"] = True
    out["done_reason"] = _DONE_REASONS.get(choice.get("finish_reason"), "stop")
    out.update(timing.fields(usage, engine_body.get("timings")))
    return out


def load_reply(t: Translated, model: str, timing: Timing) -> dict:
    """What Ollama answers a request without a prompt: the model is loaded (or unloaded),
    nothing said."""
    out = {"model": model, "created_at": now_iso()}
    if t.kind == "chat":
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    out.update({"done": True, "done_reason": "unload" if t.unload else "load",
                "total_duration": int((time.perf_counter() - timing.started) * 1e9),
                "load_duration": int(timing.load_s * 1e9)})
    return out


class StreamTranslator:
    """Server-sent events from the engine in, NDJSON lines out: one line per chunk with
    text, and a last ``done: true`` line with the reason and the counts. Events may be cut
    anywhere between pieces, so an incomplete line waits for the next piece."""

    def __init__(self, t: Translated, model: str, timing: Timing):
        self.t, self.model, self.timing = t, model, timing
        self._rest = b""
        self._reason: str | None = None
        self._usage: dict | None = None
        self._timings: dict | None = None
        self._calls: dict[int, dict] = {}  # tool calls being streamed, by index
        self.done = False

    def feed(self, piece: bytes) -> bytes:
        data = self._rest + piece
        lines = data.split(b"\n")
        self._rest = lines.pop()
        out = []
        for line in lines:
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                out.append(self.finish())
                continue
            try:
                event = json.loads(payload)
            except ValueError:
                continue
            if isinstance(event, dict):
                chunk = self._chunk(event)
                if chunk is not None:
                    out.append(chunk)
        return b"".join(out)

    def _chunk(self, event: dict) -> bytes | None:
        if isinstance(event.get("error"), dict):
            return json.dumps({"error": event["error"].get("message") or "engine error"}
                              ).encode() + b"\n"
        if isinstance(event.get("usage"), dict):
            self._usage = event["usage"]
        if isinstance(event.get("timings"), dict):
            self._timings = event["timings"]
        choices = event.get("choices") or []
        if not choices:
            return None
        choice = choices[0]
        if choice.get("finish_reason"):
            self._reason = choice["finish_reason"]
        if self.t.endpoint == "completions":
            text = choice.get("text") or ""
            if not text:
                return None
            body = {"response": text}
        else:
            delta = choice.get("delta") or {}
            self._collect_calls(delta.pop("tool_calls", None))
            msg = _message(delta)
            if choice.get("finish_reason") and self._calls:
                msg["tool_calls"] = self._take_calls()
            if not (msg["content"] or msg.get("thinking") or msg.get("tool_calls")):
                return None
            body = {"message": msg} if self.t.kind == "chat" else {"response": msg["content"]}
        if logprobs(choice):
            body["logprobs"] = logprobs(choice)
        return json.dumps({"model": self.model, "created_at": now_iso(), **body,
                           "done": False}).encode() + b"\n"

    def _collect_calls(self, deltas: list | None) -> None:
        """Streamed tool calls arrive in pieces (id and name, then the arguments in
        parts); Ollama sends each call whole, so they are joined until the choice ends."""
        for d in deltas or []:
            if not isinstance(d, dict):
                continue
            call = self._calls.setdefault(d.get("index", 0), {"name": "", "arguments": ""})
            fn = d.get("function") or {}
            call["name"] += fn.get("name") or ""
            call["arguments"] += fn.get("arguments") or ""

    def _take_calls(self) -> list:
        calls = [{"function": c} for _, c in sorted(self._calls.items())]
        self._calls = {}
        return tool_calls(calls) or []

    def finish(self) -> bytes:
        """The last line (once)."""
        if self.done:
            return b""
        self.done = True
        last = {"model": self.model, "created_at": now_iso()}
        if self.t.kind == "chat":
            last["message"] = {"role": "assistant", "content": ""}
            if self._calls:
                last["message"]["tool_calls"] = self._take_calls()
        else:
            last["response"] = ""
        last["done"] = True
        last["done_reason"] = _DONE_REASONS.get(self._reason, "stop")
        last.update(self.timing.fields(self._usage, self._timings))
        return json.dumps(last).encode() + b"\n"

    @property
    def counts(self) -> tuple[int, int]:
        stats = self.timing.fields(self._usage, self._timings)
        return stats["prompt_eval_count"], stats["eval_count"]


# -- models ------------------------------------------------------------------------------------
def model_facts(path: str) -> ModelMetadata:
    """The file's metadata (cached per file version by the reader; reads the disk, so call
    it off the event loop). A file that cannot be read has none rather than failing a
    listing."""
    try:
        return read_model_metadata(path)
    except (OSError, ValueError):
        return ModelMetadata()


#: bodhi's capability names (models/metadata.py) as Ollama's
_CAPABILITIES = {"chat": "completion", "completion": "completion", "infill": "insert",
                 "tools": "tools", "embedding": "embedding"}


def ollama_capabilities(caps) -> list[str]:
    out: list[str] = []
    for cap in caps:
        name = _CAPABILITIES.get(cap)
        if name and name not in out:
            out.append(name)
    return out


def parameter_size(count: int | None) -> str:
    """Ollama's way to write a parameter count: 135M, 1.5B."""
    if not count:
        return ""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            value = count / scale
            return f"{value:.1f}".rstrip("0").rstrip(".") + unit if value < 10 else \
                f"{value:.0f}{unit}"
    return str(count)


def details(facts: ModelMetadata) -> dict:
    family = facts.architecture or ""
    return {"parent_model": "", "format": "gguf", "family": family,
            "families": [family] if family else None,
            "parameter_size": parameter_size(facts.parameter_count),
            "quantization_level": facts.quantization or ""}


def digest(path: str, size: int, mtime: float) -> str:
    """Stands for the file version (path, size and time), not a hash of its bytes: hashing
    gigabytes for a listing is not worth it."""
    return hashlib.sha256(f"{path}\0{size}\0{mtime}".encode()).hexdigest()


def _stat(path: str) -> tuple[int, float]:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime
    except OSError:
        return 0, 0.0


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def tag_entry(model_id: str, path: str, facts: ModelMetadata) -> dict:
    size, mtime = _stat(path)
    return {"name": model_id, "model": model_id, "modified_at": iso(mtime), "size": size,
            "digest": digest(path, size, mtime), "details": details(facts)}


def ps_entry(model_id: str, path: str, facts: ModelMetadata, ctx_size: int,
             expires_at: float | None) -> dict:
    entry = tag_entry(model_id, path, facts)
    del entry["modified_at"]
    # "never" (keep_alive -1 or in use) as Ollama writes a model that does not expire
    entry["expires_at"] = iso(expires_at) if expires_at is not None else \
        "2318-01-01T00:00:00Z"
    entry["size_vram"] = 0  # llama.cpp on CPU; GPU offload size is not reported
    entry["context_length"] = ctx_size
    return entry


def show_reply(model_id: str, path: str, facts: ModelMetadata, defaults: dict) -> dict:
    params = []
    for key, value in sorted(defaults.items()):
        if key == "system_prompt":
            continue
        for v in (value if isinstance(value, list) else [value]):
            params.append(f"{key} {json.dumps(v) if isinstance(v, str) else v}")
    modelfile = [f"FROM {path}"]
    if facts.template:
        modelfile.append(f'TEMPLATE """{facts.template}"""')
    if defaults.get("system_prompt"):
        modelfile.append(f'SYSTEM """{defaults["system_prompt"]}"""')
    modelfile += [f"PARAMETER {p}" for p in params]
    info = {"general.architecture": facts.architecture}
    if facts.architecture:
        if facts.context_length is not None:
            info[f"{facts.architecture}.context_length"] = facts.context_length
        if facts.embedding_length is not None:
            info[f"{facts.architecture}.embedding_length"] = facts.embedding_length
    size, mtime = _stat(path)
    return {"modelfile": "\n".join(modelfile) + "\n", "parameters": "\n".join(params),
            "template": facts.template or "", "details": details(facts), "model_info": info,
            "capabilities": ollama_capabilities(facts.capabilities), "modified_at": iso(mtime)}


# -- pulls -------------------------------------------------------------------------------------
_HUB_PREFIXES = ("hf.co/", "huggingface.co/", "https://huggingface.co/", "https://hf.co/")


@dataclass(frozen=True)
class PullTarget:
    """What an Ollama pull name asks of the Hugging Face hub: Ollama's own convention is
    ``hf.co/owner/repo:QUANT``; a tag ending in ``.gguf`` names the file itself."""

    repo: str
    filename: str | None = None  # None: choose by ``quant`` from the repo's files
    quant: str | None = None


def pull_target(name: str) -> PullTarget:
    rest = name.strip()
    for prefix in _HUB_PREFIXES:
        if rest.lower().startswith(prefix):
            rest = rest[len(prefix):]
            break
    repo, _, tag = rest.partition(":")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise invalid("a pull names a Hugging Face repository: 'hf.co/owner/repo:QUANT' "
                      "or 'owner/repo:file.gguf'", param="model")
    if tag.lower().endswith(".gguf"):
        return PullTarget(repo, tag)
    return PullTarget(repo, None, None if tag in ("", "latest") else tag)


def pick_gguf(files: list[str], quant: str | None) -> str:
    """The file a quantization tag means (the first part of a split model); without a tag
    Ollama's default, Q4_K_M, else the only GGUF there is. Projectors (mmproj) never."""
    ggufs = [f for f in files if f.lower().endswith(".gguf") and "mmproj" not in f.lower()
             and ("-of-" not in f or "-00001-of-" in f)]
    wanted = quant or "Q4_K_M"
    matching = [f for f in ggufs if wanted.lower() in f.rsplit("/", 1)[-1].lower()]
    if matching:
        return sorted(matching, key=len)[0]
    if quant is None and len(ggufs) == 1:
        return ggufs[0]
    if not ggufs:
        raise invalid("the repository has no GGUF file", param="model")
    raise invalid(f"no GGUF file matches '{wanted}'; name one with ':<file>.gguf' "
                  f"(there are: {', '.join(sorted(ggufs)[:10])})", param="model")


def pull_lines(pull: dict, sent: dict) -> list[dict]:
    """Ollama's progress lines for a pull's state (a Pull's JSON), only what changed since
    ``sent`` (kept by the caller): "pulling manifest", then "pulling <file>" with
    ``total``/``completed``, then "verifying sha256 digest", "writing manifest", "success"."""
    out = []
    if not sent.get("manifest"):
        sent["manifest"] = True
        out.append({"status": "pulling manifest"})
    state = pull.get("state")
    if state in ("running", "done") and pull.get("bytes_total"):
        progress = (pull["bytes_total"], pull.get("bytes_done") or 0)
        if sent.get("progress") != progress:
            sent["progress"] = progress
            out.append({"status": f"pulling {pull.get('filename')}",
                        "digest": pull.get("filename"), "total": progress[0],
                        "completed": progress[1]})
    if state == "done":
        out += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"},
                {"status": "success"}]
    elif state in ("failed", "cancelled"):
        err = pull.get("error") or {}
        out.append({"error": err.get("message") or f"the pull was {state}"})
    return out
