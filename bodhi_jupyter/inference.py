"""Checking a request before any engine is touched, and shaping what is sent upstream. A
request rejected here starts nothing and stores nothing.

The shape of each request is its JSON Schema in :mod:`.schemas` (the same one the OpenAPI
document publishes); this module adds what depends on the model: the model must be able
to do what is asked (:mod:`.models.capabilities`), images need a vision projector,
embeddings ``dimensions`` must be the model's own size, and an alias's request defaults
are filled in under each API's own field names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from . import infill
from .errors import invalid
from .jsonbody import parse_json_object
from .models.capabilities import check_capable
from .models.metadata import GGUFError, ModelMetadata, describe
from .models.registry import ModelRegistry, ResolvedModel, apply_request_defaults
from .schemas import validate
from .service_forwarding import SERVICE_UPSTREAM

ENDPOINTS = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
    "responses": "/v1/responses",
    "messages": "/v1/messages",
    "count_tokens": "/v1/messages/count_tokens",
    "infill": "/infill",  # or /completion: see PreparedRequest.path
}

#: content parts that the engine can only take with a multimodal projector (mmproj)
_MEDIA_PARTS = {
    "chat": ("messages", {"image_url": "images", "input_audio": "audio"}),
    "responses": ("input", {"input_image": "images", "input_audio": "audio"}),
    "messages": ("messages", {"image": "images"}),
    "count_tokens": ("messages", {"image": "images"}),
}

#: an alias's request defaults (written in chat-completion terms) under the names of the
#: Responses and Messages APIs; ``system_prompt`` goes to their own system field
_DEFAULT_NAMES = {
    "responses": {"max_tokens": "max_output_tokens", "temperature": "temperature",
                  "top_p": "top_p"},
    "messages": {"max_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p",
                 "top_k": "top_k", "stop": "stop_sequences"},
    "count_tokens": {},
}
_SYSTEM_FIELD = {"responses": "instructions", "messages": "system", "count_tokens": "system"}


@dataclass
class PreparedRequest:
    endpoint: str
    model: ResolvedModel
    payload: bytes
    stream: bool
    body: dict = field(default_factory=dict, repr=False)  # what payload encodes
    path: str = ""  # the engine path, where the endpoint has more than one (infill)
    mode: str | None = None  # infill: "infill" or "completion" (no FIM tokens)

    @property
    def upstream_path(self) -> str:
        return self.path or ENDPOINTS[self.endpoint]

    @property
    def embedding(self) -> bool:
        return self.endpoint == "embeddings"


def media_part(endpoint: str, body: dict) -> tuple[str, str] | None:
    """(JSON path, what) of the first image or audio part of a request, if any."""
    field, kinds = _MEDIA_PARTS.get(endpoint, (None, {}))
    items = body.get(field) if field else None
    if not isinstance(items, list):
        return None
    for i, item in enumerate(items):
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, list):
            for j, part in enumerate(content):
                kind = kinds.get(part.get("type")) if isinstance(part, dict) else None
                if kind:
                    return f"{field}[{i}].content[{j}]", kind
    return None


def with_defaults(endpoint: str, body: dict, defaults: dict) -> dict:
    """Fill in what the request left out from the model's request defaults."""
    if endpoint not in _DEFAULT_NAMES:
        return apply_request_defaults(endpoint, body, defaults)
    out = dict(body)
    for key, value in defaults.items():
        target = _DEFAULT_NAMES[endpoint].get(key)
        if target is not None:
            out.setdefault(target, [value] if target == "stop_sequences"
                           and isinstance(value, str) else value)
    prompt = defaults.get("system_prompt")
    field = _SYSTEM_FIELD[endpoint]
    has_system = bool(out.get(field)) or any(
        isinstance(m, dict) and m.get("role") in ("system", "developer")
        for m in (out.get("input") if isinstance(out.get("input"), list) else []))
    if prompt and not has_system:
        out[field] = prompt
    return out


class InferenceGateway:
    """Validates a request, resolves its model and applies the model's defaults."""

    def __init__(self, registry: ModelRegistry):
        self.registry = registry

    async def prepare(self, endpoint: str, raw: bytes) -> PreparedRequest:
        body = parse_json_object(raw)
        validate(endpoint, body)
        model = await self.registry.resolve_fresh(body["model"])  # ModelNotFound: a 404
        if model.targets is not None:  # a router: shaped per target (for_model) when served
            return PreparedRequest(endpoint, model, b"", body.get("stream") is True, body)
        return await self.for_model(endpoint, body, model)

    async def for_model(self, endpoint: str, body: dict, model: ResolvedModel
                        ) -> PreparedRequest:
        """The request as sent to one model: its checks, its defaults, its name."""
        if (model.remote is not None and endpoint == "infill"
                and model.remote.upstream != SERVICE_UPSTREAM):  # a bodhi service has it
            raise invalid(f"The model '{model.id}' is served by the upstream "
                          f"'{model.remote.upstream}', which has no infill endpoint: use a "
                          "local model", param="model", code="model_not_infill_capable")
        if model.remote is not None:  # the upstream judges what it can take
            body = with_defaults(endpoint, body, model.request_defaults)
            body["model"] = model.remote.model  # the upstream's own name for it
            return PreparedRequest(endpoint, model, json.dumps(body).encode(),
                                   body.get("stream") is True, body)
        meta = await self._metadata(model)
        check_capable(endpoint, model, meta)
        media = media_part(endpoint, body)
        if media is not None and not model.server.mmproj:
            where, kind = media
            raise invalid(f"The model '{model.id}' takes text only: {kind} need a "
                          "multimodal projector (an alias with the server option 'mmproj')",
                          param=where, code="unsupported_content")
        if endpoint == "embeddings" and body.get("dimensions") is not None:
            self._check_dimensions(model, meta, body["dimensions"])
        body = with_defaults(endpoint, body, model.request_defaults)
        body["model"] = model.id
        if endpoint == "infill":
            return self._infill(model, meta, body)
        return PreparedRequest(endpoint, model, json.dumps(body).encode(),
                               body.get("stream") is True, body)

    @staticmethod
    def _infill(model: ResolvedModel, meta: ModelMetadata | None,
                body: dict) -> PreparedRequest:
        body = infill.normalise(body)
        prepared = PreparedRequest("infill", model, json.dumps(body).encode(),
                                   body.get("stream") is True, body,
                                   path=infill.PATHS[infill.INFILL], mode=infill.INFILL)
        if infill.mode_for(meta) == infill.COMPLETION:
            return infill.as_completion(prepared)
        return prepared

    @staticmethod
    async def _metadata(model: ResolvedModel) -> ModelMetadata | None:
        """The scan's reading of the file; a file it has not read (a path an alias named
        since) is read now, in a thread, once per file version."""
        if model.metadata is not None:
            return model.metadata
        try:
            return await describe(model.path)
        except (OSError, GGUFError):
            return None

    @staticmethod
    def _check_dimensions(model: ResolvedModel, meta: ModelMetadata | None,
                          wanted: int) -> None:
        """llama.cpp returns the model's full vector and cannot shorten it. Truncating and
        renormalising is only right for models trained for it (Matryoshka), which the
        file does not say, so any other size is refused rather than faked."""
        size = meta.embedding_length if meta is not None else None
        if size is None:
            raise invalid(f"'dimensions' cannot be checked for '{model.id}' (its file does "
                          "not state an embedding size); leave it out", param="dimensions")
        if wanted != size:
            raise invalid(f"'dimensions' must be {size}, the embedding size of "
                          f"'{model.id}' (llama.cpp cannot shorten embeddings); leave it "
                          f"out or send {size}",
                          param="dimensions")
