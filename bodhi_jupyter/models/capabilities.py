"""What a model can be asked to do, from its GGUF metadata and its alias's server options,
and the check that refuses a request the model cannot serve before any engine starts.

An engine asked for something its model cannot do answers confusingly, or not at all: an
encoder (BERT) has no text to generate, and a model without a chat template gets
llama.cpp's fallback format, which a base model was never trained on. Embeddings stay open
to every model: llama.cpp mean-pools a decoder's hidden states too.
"""

from __future__ import annotations

from ..errors import invalid
from .metadata import UNKNOWN_FIELDS, ModelMetadata
from .registry import ResolvedModel

#: endpoints whose messages the engine must format with a chat template
CHAT_ENDPOINTS = {"chat", "responses", "messages", "count_tokens"}

_PATH = {"chat": "/v1/chat/completions", "responses": "/v1/responses",
         "messages": "/v1/messages", "count_tokens": "/v1/messages/count_tokens",
         "completions": "/v1/completions"}


def configured_template(model: ResolvedModel) -> bool:
    """Whether the alias gives the engine a chat template of its own."""
    opts = model.server
    return bool(opts.chat_template or opts.chat_template_file or any(
        str(a).split("=", 1)[0] in ("--chat-template", "--chat-template-file")
        for a in opts.extra_args))


def capabilities(model: ResolvedModel, meta: ModelMetadata | None = None) -> list[str] | None:
    """The model's capabilities (None when its file could not be read): the file's, plus
    chat when an alias configures a template for a model whose file has none."""
    meta = meta or model.metadata
    if meta is None:
        return None
    caps = list(meta.capabilities)
    if "chat" not in caps and not meta.embedding_only and configured_template(model):
        caps.insert(0, "chat")
    return caps


def model_fields(model: ResolvedModel) -> dict:
    """The metadata fields every model object carries (CONTRACTS.md "Model metadata")."""
    meta = model.metadata
    if meta is None:
        return {"source": model.kind, **UNKNOWN_FIELDS}
    return {"source": model.kind, **meta.fields(),
            "chat_template": meta.chat_template or configured_template(model),
            "capabilities": capabilities(model, meta)}


def check_capable(endpoint: str, model: ResolvedModel, meta: ModelMetadata | None) -> None:
    """Refuse (400) a request the model cannot serve. Unknown metadata: the engine decides."""
    if meta is None:
        return
    if endpoint in CHAT_ENDPOINTS:
        if meta.embedding_only:
            raise invalid(
                f"The model '{model.id}' is an embedding model ({meta.architecture}) and "
                f"cannot chat: send its input to /v1/embeddings instead",
                param="model", code="model_not_chat_capable")
        if not meta.chat_template and not configured_template(model):
            raise invalid(
                f"The model '{model.id}' has no chat template in its GGUF file, so "
                f"{_PATH[endpoint]} cannot format messages for it. Send a plain prompt to "
                "/v1/completions, or use an alias for it with the server option "
                "'chat_template' (a llama.cpp template name such as 'chatml') or "
                "'chat_template_file' (a Jinja template file)",
                param="model", code="no_chat_template")
    elif endpoint in ("completions", "infill") and meta.embedding_only:
        raise invalid(
            f"The model '{model.id}' is an embedding model ({meta.architecture}) and cannot "
            "generate text: send its input to /v1/embeddings instead",
            param="model", code="model_not_completion_capable")
