"""Checking an OpenAI-style request before any engine is touched, and shaping what is sent
upstream. A request rejected here starts nothing and stores nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .errors import BodhiAPIError, invalid
from .models.registry import ModelNotFound, ModelRegistry, ResolvedModel, apply_request_defaults

ENDPOINTS = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
}
_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


@dataclass
class PreparedRequest:
    endpoint: str
    model: ResolvedModel
    payload: bytes
    stream: bool
    body: dict = field(default_factory=dict, repr=False)  # what payload encodes

    @property
    def upstream_path(self) -> str:
        return ENDPOINTS[self.endpoint]

    @property
    def embedding(self) -> bool:
        return self.endpoint == "embeddings"


def parse_json_object(raw: bytes) -> dict:
    try:
        body = json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError) as e:
        raise BodhiAPIError(400, f"The request body is not valid JSON: {e}",
                            code="invalid_json") from None
    if not isinstance(body, dict):
        raise BodhiAPIError(400, "The request body must be a JSON object", code="invalid_json")
    return body


def _check_number(body: dict, name: str, lo: float | None = None, hi: float | None = None,
                  integer: bool = False) -> None:
    if name not in body or body[name] is None:
        return
    value = body[name]
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    if not ok or (lo is not None and value < lo) or (hi is not None and value > hi):
        kind = "an integer" if integer else "a number"
        bounds = f" between {lo} and {hi}" if hi is not None else (
            f" >= {lo}" if lo is not None else "")
        raise invalid(f"'{name}' must be {kind}{bounds}", param=name)


def _check_messages(messages) -> None:
    if messages is None:
        raise invalid("'messages' is required", param="messages", code="missing_required_field")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty array", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise invalid(f"messages[{i}] must be an object with a 'role'",
                          param=f"messages[{i}]")
        if m["role"] not in _ROLES:
            raise invalid(f"messages[{i}].role must be one of {sorted(_ROLES)}",
                          param=f"messages[{i}].role")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise invalid(f"messages[{i}].content must be a string or an array",
                          param=f"messages[{i}].content")


def _check_text_input(body: dict, name: str) -> None:
    value = body.get(name)
    if value is None:
        raise invalid(f"'{name}' is required", param=name, code="missing_required_field")
    if isinstance(value, str):
        return
    if isinstance(value, list) and value and all(
            isinstance(v, (str, int)) or (isinstance(v, list) and all(isinstance(t, int)
                                                                       for t in v))
            for v in value):
        return
    raise invalid(f"'{name}' must be a string or a non-empty array of strings or tokens",
                  param=name)


class InferenceGateway:
    """Validates a request, resolves its model and applies the model's defaults."""

    def __init__(self, registry: ModelRegistry):
        self.registry = registry

    def prepare(self, endpoint: str, raw: bytes) -> PreparedRequest:
        body = parse_json_object(raw)
        model_name = body.get("model")
        if model_name is None:
            raise invalid("'model' is required", param="model", code="missing_required_field")
        if not isinstance(model_name, str) or not model_name:
            raise invalid("'model' must be a non-empty string", param="model")
        if endpoint == "chat":
            _check_messages(body.get("messages"))
        elif endpoint == "completions":
            _check_text_input(body, "prompt")
        else:
            _check_text_input(body, "input")
        stream = body.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            raise invalid("'stream' must be a boolean", param="stream")
        if endpoint == "embeddings" and stream:
            raise invalid("embeddings cannot be streamed", param="stream")
        for name in ("max_tokens", "max_completion_tokens", "n_predict"):
            _check_number(body, name, lo=1 if name != "n_predict" else -1, integer=True)
        _check_number(body, "temperature", 0, 2)
        _check_number(body, "top_p", 0, 1)
        _check_number(body, "n", 1, 1, integer=True)
        stop = body.get("stop")
        if stop is not None and not (isinstance(stop, str) or (
                isinstance(stop, list) and all(isinstance(s, str) for s in stop))):
            raise invalid("'stop' must be a string or an array of strings", param="stop")
        try:
            model = self.registry.resolve(model_name)
        except ModelNotFound as e:
            raise BodhiAPIError(404, str(e), code="model_not_found", param="model") from None
        body = apply_request_defaults(endpoint, body, model.request_defaults)
        body["model"] = model.id
        return PreparedRequest(endpoint, model, json.dumps(body).encode(), bool(stream), body)
