"""OpenAPI: the metadata fields every model object carries (``bodhi/v1/models``,
``bodhi/v1/models/{id}``, ``bodhi/app/models``), added to those schemas in one place."""

from __future__ import annotations

SOURCES = ["alias", "hf-cache", "directory", "package", "path", "remote", "router"]
CAPABILITIES = ["chat", "completion", "embedding", "infill", "tools"]


def _nullable(kind: str, description: str) -> dict:
    return {"type": [kind, "null"], "description": description}


METADATA_PROPERTIES = {
    "source": {"enum": SOURCES, "description": "where the model comes from"},
    "architecture": _nullable("string", "general.architecture, e.g. llama, bert"),
    "parameter_count": _nullable("integer", "weights in the file (from its tensor shapes)"),
    "quantization": _nullable("string", "file type, e.g. Q4_1, F16"),
    "file_size": _nullable("integer", "bytes on disk (all parts of a split file)"),
    "context_length": _nullable("integer", "the context the model was trained for"),
    "embedding_length": _nullable("integer", "hidden size; the embeddings' dimensions"),
    "chat_template": _nullable("boolean", "a chat template, in the file or the alias"),
    "capabilities": {"type": ["array", "null"], "items": {"enum": CAPABILITIES},
                     "description": "what the model can be asked for (null: unknown)"},
}


def add_model_metadata(schemas: dict) -> None:
    """Add the metadata fields to the Model and AppModel schemas (required: every model
    object has them, null where unknown)."""
    for name in ("Model", "AppModel"):
        schema = schemas[name]
        schema["properties"].update(METADATA_PROPERTIES)
        schema["required"] = [*schema["required"],
                              *(k for k in METADATA_PROPERTIES if k not in schema["required"])]
