"""The request contract of the inference endpoints, written once as JSON Schemas: the
OpenAPI document publishes these dicts and :func:`validate` checks requests against the
same dicts.

Validation uses ``fastjsonschema`` (already installed with Jupyter, via nbformat), which
compiles each schema to Python once: a typical chat request costs ~5 us of CPU, where
``jsonschema``'s validator costs ~105 us (measured on this machine, CPU time). Schemas stay
within what draft 7 and OpenAPI 3.1 (draft 2020-12) read alike. A node's ``description``
doubles as the error message ("'stop' must be ..."), so keep it a phrase that fits.

The schemas check shapes; what depends on the model (images need a vision projector,
embedding ``dimensions``) is checked in :mod:`.inference`. Fields not listed here pass
through to llama-server untouched (it takes many of its own).
"""

from __future__ import annotations

import copy
import functools

import fastjsonschema

from .errors import BodhiAPIError

INT32_MAX = 2**31 - 1  # llama-server reads counts into 32-bit ints


def _int(lo: int, hi: int = INT32_MAX, description: str | None = None) -> dict:
    out = {"type": "integer", "minimum": lo, "maximum": hi}
    if description:
        out["description"] = description
    return out


def _num(lo: float, hi: float) -> dict:
    return {"type": "number", "minimum": lo, "maximum": hi}


_STR = {"type": "string"}
_MODEL = {"type": "string", "minLength": 1, "description": "a non-empty string"}
_STREAM = {"type": "boolean", "description": "a boolean"}
_STOP = {"description": "a string or an array of strings",
         "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_OBJECT = {"type": "object"}

# sampling fields that the OpenAI-style endpoints share, bounded as llama-server reads them
_SAMPLING = {
    "stream": _STREAM,
    "max_tokens": _int(1),
    "max_completion_tokens": _int(1),
    "n_predict": _int(-1),
    "temperature": _num(0, 2),
    "top_p": _num(0, 1),
    "min_p": _num(0, 1),
    "top_k": _int(0),
    "n": _int(1, 1, "1 (one choice per request)"),
    "stop": _STOP,
    "seed": _int(-1, 2**32 - 1, "an integer from -1 (random) to 4294967295"),
    "presence_penalty": _num(-2, 2),
    "frequency_penalty": _num(-2, 2),
    "repeat_penalty": {"type": "number"},
    "n_probs": _int(0),
    "top_logprobs": _int(0, 20),
    "n_keep": _int(-1),
    "min_keep": _int(0),
    "stream_options": {"type": "object", "properties": {
        "include_usage": {"type": "boolean"}}},
}

_FUNCTION = {"type": "object", "required": ["name"],
             "description": "an object with a 'name'",
             "properties": {"name": {"type": "string", "minLength": 1},
                            "description": _STR,
                            "parameters": {"type": "object"},
                            "strict": {"type": ["boolean", "null"]}}}
_TOOLS = {"type": "array", "description": 'an array of {"type": "function", "function": '
          '{"name", "parameters"...}}', "items": {
              "type": "object", "required": ["type", "function"],
              "description": 'a {"type": "function", "function": {...}} object',
              "properties": {"type": {"const": "function"}, "function": _FUNCTION}}}
_TOOL_CHOICE = {"description": '"none", "auto", "required" or {"type": "function", '
                '"function": {"name"}}',
                "anyOf": [{"enum": ["none", "auto", "required"]},
                          {"type": "object", "required": ["type", "function"],
                           "properties": {"type": {"const": "function"},
                                          "function": _FUNCTION}}]}
_TOOL_CALLS = {"type": "array", "items": {
    "type": "object", "required": ["type", "function"],
    "description": 'a {"id", "type": "function", "function": {"name", "arguments"}} object',
    "properties": {"id": _STR, "type": {"const": "function"}, "function": {
        "type": "object", "required": ["name"], "properties": {
            "name": _STR, "arguments": _STR}}}}}


def _part(kind: str, field: str, schema: dict) -> dict:
    """A content part of ``type`` kind that must carry ``field``."""
    return {"if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
            "then": {"required": [field], "properties": {field: schema}}}


_CHAT_PART = {
    "type": "object", "required": ["type"],
    "description": 'a content part such as {"type": "text", "text": ...}',
    "properties": {"type": _STR},
    "allOf": [_part("text", "text", _STR),
              _part("image_url", "image_url", {
                  "anyOf": [_STR, {"type": "object", "required": ["url"],
                                   "properties": {"url": _STR}}]}),
              _part("input_audio", "input_audio", _OBJECT)],
}
_CHAT_MESSAGE = {
    "type": "object", "required": ["role"], "description": "an object with a 'role'",
    "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant", "tool", "function"]},
        "content": {"description": "a string, an array of content parts, or null",
                    "anyOf": [{"type": "string"}, {"type": "null"},
                              {"type": "array", "items": _CHAT_PART}]},
        "tool_calls": _TOOL_CALLS,
        "tool_call_id": _STR,
    },
}
_TEXT_INPUT = {"description": "a string or a non-empty array of strings or token arrays",
               "anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {
                   "anyOf": [{"type": "string"}, {"type": "integer"},
                             {"type": "array", "items": {"type": "integer"}}]}}]}

# -- the OpenAI Responses API (llama-server's /v1/responses) --------------------------------
_RESPONSE_PART = {
    "type": "object", "required": ["type"],
    "description": 'a content part such as {"type": "input_text", "text": ...}',
    "properties": {"type": _STR},
    "allOf": [_part("input_text", "text", _STR), _part("output_text", "text", _STR),
              _part("input_image", "image_url", _STR)],
}
_RESPONSE_ITEM = {
    "type": "object", "description": "an input item (a message, a function call or its "
    "output)",
    "properties": {
        "type": _STR,
        "role": {"enum": ["user", "assistant", "system", "developer"]},
        "content": {"description": "a string or an array of content parts",
                    "anyOf": [{"type": "string"}, {"type": "array", "items": _RESPONSE_PART}]},
    },
}
_RESPONSE_TOOLS = {"type": "array", "items": {
    "type": "object", "required": ["type"], "description": 'a tool such as {"type": '
    '"function", "name", "parameters"}',
    "properties": {"type": _STR, "name": _STR, "parameters": _OBJECT}}}

# -- the Anthropic Messages API (llama-server's /v1/messages) -------------------------------
_ANTHROPIC_BLOCK = {
    "type": "object", "required": ["type"],
    "description": 'a content block such as {"type": "text", "text": ...}',
    "properties": {"type": _STR},
    "allOf": [_part("text", "text", _STR), _part("image", "source", _OBJECT),
              _part("tool_use", "name", _STR), _part("tool_result", "tool_use_id", _STR)],
}
_ANTHROPIC_MESSAGE = {
    "type": "object", "required": ["role", "content"],
    "description": "an object with 'role' and 'content'",
    "properties": {
        "role": {"enum": ["user", "assistant"]},
        "content": {"description": "a string or an array of content blocks",
                    "anyOf": [{"type": "string"},
                              {"type": "array", "items": _ANTHROPIC_BLOCK}]},
    },
}
_ANTHROPIC_COMMON = {
    "model": _MODEL,
    "messages": {"type": "array", "minItems": 1, "items": _ANTHROPIC_MESSAGE,
                 "description": "a non-empty array of messages"},
    "system": {"description": "a string or an array of text blocks",
               "anyOf": [{"type": "string"}, {"type": "array", "items": _ANTHROPIC_BLOCK}]},
    "tools": {"type": "array", "items": {
        "type": "object", "required": ["name"], "description": 'a tool such as {"name", '
        '"input_schema"}',
        "properties": {"name": {"type": "string", "minLength": 1}, "description": _STR,
                       "input_schema": _OBJECT}}},
    "tool_choice": {"type": "object", "required": ["type"],
                    "description": 'an object such as {"type": "auto"}',
                    "properties": {"type": {"enum": ["auto", "any", "tool", "none"]},
                                   "name": _STR}},
}

# -- llama-server's /infill (fill in the middle, for ghost text in notebook cells) ----------
#: the largest text of one infill field, in characters: far more than a slot's context, so
#: it only stops a runaway client (the engine keeps the end of the prefix that fits)
INFILL_MAX_CHARS = 262_144
INFILL_MAX_EXTRA = 32  # neighbouring chunks (cells, files) of context
_INFILL_TEXT = {"type": "string", "maxLength": INFILL_MAX_CHARS,
                "description": f"a string of at most {INFILL_MAX_CHARS} characters"}
_INFILL_CHUNK = {
    "type": "object", "required": ["filename", "text"],
    "description": 'an object {"filename": string, "text": string}',
    "properties": {"filename": {"type": "string", "maxLength": 1024,
                                "description": "a string of at most 1024 characters"},
                   "text": _INFILL_TEXT}}

REQUEST_SCHEMAS: dict[str, dict] = {
    "ChatCompletionRequest": {
        "type": "object", "required": ["model", "messages"],
        "properties": {
            "model": _MODEL,
            "messages": {"type": "array", "minItems": 1, "items": _CHAT_MESSAGE,
                         "description": "a non-empty array of messages"},
            **_SAMPLING,
            "tools": _TOOLS,
            "tool_choice": _TOOL_CHOICE,
            "parallel_tool_calls": {"type": "boolean"},
            "response_format": {"type": "object", "required": ["type"], "properties": {
                "type": {"enum": ["text", "json_object", "json_schema"]}}},
        }},
    "CompletionRequest": {
        "type": "object", "required": ["model", "prompt"],
        "properties": {"model": _MODEL, "prompt": _TEXT_INPUT, **_SAMPLING}},
    "EmbeddingRequest": {
        "type": "object", "required": ["model", "input"],
        "properties": {
            "model": _MODEL, "input": _TEXT_INPUT,
            "encoding_format": {"enum": ["float", "base64"]},  # the openai SDK asks base64
            "dimensions": _int(1, description="a positive integer (the model's own size: "
                               "llama.cpp cannot shorten embeddings)"),
            "stream": {"const": False, "description": "false (embeddings cannot be "
                       "streamed)"}}},
    "ResponseRequest": {
        "type": "object", "required": ["model", "input"],
        "properties": {
            "model": _MODEL,
            "input": {"description": "a string or an array of input items",
                      "anyOf": [{"type": "string"},
                                {"type": "array", "items": _RESPONSE_ITEM}]},
            "instructions": {"type": ["string", "null"]},
            "stream": _STREAM,
            "max_output_tokens": _int(1),
            "temperature": _num(0, 2),
            "top_p": _num(0, 1),
            "tools": _RESPONSE_TOOLS,
            "tool_choice": {"description": '"none", "auto", "required" or an object',
                            "anyOf": [{"enum": ["none", "auto", "required"]}, _OBJECT]},
        }},
    "MessageRequest": {
        "type": "object", "required": ["model", "messages"],
        "properties": {
            **_ANTHROPIC_COMMON,
            "max_tokens": _int(1),
            "stream": _STREAM,
            "temperature": _num(0, 1),
            "top_p": _num(0, 1),
            "top_k": _int(0),
            "stop_sequences": {"type": "array", "items": _STR,
                               "description": "an array of strings"},
            "metadata": _OBJECT,
        }},
    "CountTokensRequest": {
        "type": "object", "required": ["model", "messages"],
        "properties": dict(_ANTHROPIC_COMMON)},
    "InfillRequest": {
        "type": "object", "required": ["model"],
        "properties": {
            "model": _MODEL,
            "input_prefix": _INFILL_TEXT,
            "input_suffix": _INFILL_TEXT,
            "input_extra": {"type": "array", "maxItems": INFILL_MAX_EXTRA,
                            "items": _INFILL_CHUNK,
                            "description": f"an array of at most {INFILL_MAX_EXTRA} "
                            '{"filename", "text"} objects'},
            "prompt": _INFILL_TEXT,
            "n_predict": _int(-1),
            "max_tokens": _int(1),
            "n_indent": _int(0),
            "temperature": _num(0, 2),
            "top_k": _int(0),
            "top_p": _num(0, 1),
            "min_p": _num(0, 1),
            "stop": _STOP,
            "seed": _SAMPLING["seed"],
            "stream": _STREAM,
        }},
}

#: which schema checks which endpoint
ENDPOINT_SCHEMAS = {
    "chat": "ChatCompletionRequest",
    "completions": "CompletionRequest",
    "embeddings": "EmbeddingRequest",
    "responses": "ResponseRequest",
    "messages": "MessageRequest",
    "count_tokens": "CountTokensRequest",
    "infill": "InfillRequest",
}

@functools.cache
def _validator(name: str):
    """The compiled check of one schema, made when an endpoint is first used: the code
    fastjsonschema generates for all of them takes ~8 MiB and ~60 ms of CPU, which would
    otherwise be paid at every server start for routes a person may never call."""
    return fastjsonschema.compile(copy.deepcopy(REQUEST_SCHEMAS[name]))


def _param(body, parts: list[str]) -> tuple[str | None, object]:
    """fastjsonschema's path (``["data", "messages", "0"]``) as ``messages[0]``, and the
    value there. List indices come back as strings, so the body decides which is which."""
    out, value = "", body
    for part in parts[1:]:
        if isinstance(value, list):
            value = value[int(part)]
            out += f"[{part}]"
        else:
            value = value.get(part) if isinstance(value, dict) else None
            out += f".{part}" if out else part
    return out or None, value


def validate(endpoint: str, body: dict) -> None:
    """Raise a 400 naming the first field that breaks the endpoint's schema."""
    try:
        _validator(ENDPOINT_SCHEMAS[endpoint])(body)
    except fastjsonschema.JsonSchemaValueException as e:
        raise _error(body, e) from None


_KINDS = {"string": "a string", "array": "an array", "object": "an object",
          "boolean": "a boolean", "integer": "an integer", "number": "a number",
          "null": "null"}
_PY_TYPES = {"string": str, "array": list, "object": dict, "boolean": bool,
             "integer": int, "number": (int, float), "null": type(None)}
_branches: dict[int, object] = {}


def _branch_error(definition: dict, value) -> fastjsonschema.JsonSchemaValueException | None:
    """When no ``anyOf`` branch fits, the error of the branch of the value's own type
    (the array branch for an array...) says more than "none fit"."""
    for branch in definition.get("anyOf", []):
        kind = branch.get("type")
        if isinstance(kind, str) and isinstance(value, _PY_TYPES[kind]) and not (
                isinstance(value, bool) and kind != "boolean"):
            check = _branches.get(id(branch))
            if check is None:  # compiled once, on the first error that needs it
                check = _branches[id(branch)] = fastjsonschema.compile(copy.deepcopy(branch))
            try:
                check(value)
            except fastjsonschema.JsonSchemaValueException as e:
                return e
    return None


def _error(body: dict, e: fastjsonschema.JsonSchemaValueException,
           prefix: list[str] | None = None) -> BodhiAPIError:
    path = [*(prefix or []), *list(e.path)[1 if prefix else 0:]]
    param, value = _param(body, path)
    definition = e.definition if isinstance(e.definition, dict) else {}
    if e.rule == "anyOf":
        inner = _branch_error(definition, value)
        if inner is not None:
            return _error(body, inner, path)
    if e.rule == "required":
        missing = next((f for f in definition.get("required", [])
                        if not isinstance(value, dict) or f not in value), None)
        if missing is not None:
            where = f"{param}.{missing}" if param else missing
            return BodhiAPIError(400, f"'{where}' is required", code="missing_required_field",
                                 param=where)
    if definition.get("description"):
        message = f"'{param}' must be {definition['description']}"
    elif e.rule in ("enum", "const"):
        allowed = definition.get("enum", [definition.get("const")])
        message = f"'{param}' must be one of {', '.join(map(repr, allowed))}"
    elif e.rule in ("minimum", "maximum") or definition.get("type") in ("integer", "number"):
        kind = "an integer" if definition.get("type") == "integer" else "a number"
        lo, hi = definition.get("minimum"), definition.get("maximum")
        bounds = (f" between {lo} and {hi}" if lo is not None and hi is not None
                  else f" >= {lo}" if lo is not None else "")
        message = f"'{param}' must be {kind}{bounds}"
    elif e.rule == "minItems":
        message = f"'{param}' must not be empty"
    elif e.rule == "type" and isinstance(definition.get("type"), str):
        message = f"'{param}' must be {_KINDS.get(definition['type'], definition['type'])}"
    else:
        message = e.message.replace("data.", "", 1).replace("data", param or "body", 1)
        message = f"'{param}': {message}" if param and param not in message else message
    return BodhiAPIError(400, message, code="invalid_value", param=param)


#: a 400 for a fastjsonschema error, for modules with schemas of their own (the Ollama API)
schema_error = _error
