"""OpenAPI paths of the Ollama-compatible API (``bodhi/api/*``), merged into the document
by ``openapi.py``. Request schemas are the ones that validate (:mod:`.ollama`)."""

from __future__ import annotations

from .ollama import SCHEMAS as REQUESTS


def add_ollama_paths(paths: dict, schemas: dict, op, json, ref) -> None:
    error = json(ref("OllamaError"), 'Error, in Ollama\'s shape {"error": "message"}')
    errors = {code: error for code in ("400", "401", "403", "404", "413", "429", "502",
                                       "503")}
    details = {"type": "object", "properties": {
        "parent_model": {"type": "string"}, "format": {"type": "string"},
        "family": {"type": "string"},
        "families": {"type": ["array", "null"], "items": {"type": "string"}},
        "parameter_size": {"type": "string"}, "quantization_level": {"type": "string"}}}
    model = {"type": "object", "required": ["name", "model", "size", "digest", "details"],
             "properties": {"name": {"type": "string"}, "model": {"type": "string"},
                            "modified_at": {"type": "string", "format": "date-time"},
                            "size": {"type": "integer"}, "digest": {"type": "string"},
                            "details": ref("OllamaModelDetails")}}
    stats = {k: {"type": "integer"} for k in (
        "total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
        "eval_count", "eval_duration")}
    message = {"type": "object", "required": ["role"], "properties": {
        "role": {"type": "string"}, "content": {"type": "string"},
        "thinking": {"type": "string"}, "tool_calls": {"type": "array"}}}
    base = {"model": {"type": "string"}, "created_at": {"type": "string"},
            "done": {"type": "boolean"}, "done_reason": {"type": "string"}, **stats}
    schemas.update({
        **REQUESTS,
        "OllamaPullStatus": {"type": "object", "properties": {
            "status": {"type": "string"}, "digest": {"type": "string"},
            "total": {"type": "integer"}, "completed": {"type": "integer"},
            "error": {"type": "string"}}},
        "OllamaError": {"type": "object", "required": ["error"],
                        "properties": {"error": {"type": "string"}}},
        "OllamaModelDetails": details,
        "OllamaModel": model,
        "OllamaTags": {"type": "object", "required": ["models"], "properties": {
            "models": {"type": "array", "items": ref("OllamaModel")}}},
        "OllamaRunning": {"type": "object", "required": ["models"], "properties": {
            "models": {"type": "array", "items": {"allOf": [ref("OllamaModel"), {
                "type": "object", "properties": {
                    "expires_at": {"type": "string"}, "size_vram": {"type": "integer"},
                    "context_length": {"type": "integer"}}}]}}}},
        "OllamaShow": {"type": "object", "required": ["details", "capabilities"],
                       "properties": {
                           "modelfile": {"type": "string"}, "parameters": {"type": "string"},
                           "template": {"type": "string"}, "details": ref("OllamaModelDetails"),
                           "model_info": {"type": "object"},
                           "capabilities": {"type": "array", "items": {"type": "string"}},
                           "modified_at": {"type": "string"}}},
        "OllamaChatResponse": {"type": "object", "required": ["model", "done"],
                               "properties": {**base, "message": message}},
        "OllamaGenerateResponse": {"type": "object", "required": ["model", "done"],
                                   "properties": {**base, "response": {"type": "string"}}},
        "OllamaEmbedResponse": {"type": "object", "required": ["model", "embeddings"],
                                "properties": {
                                    "model": {"type": "string"},
                                    "embeddings": {"type": "array", "items": {
                                        "type": "array", "items": {"type": "number"}}},
                                    **stats}},
        "OllamaEmbeddingsResponse": {"type": "object", "required": ["embedding"],
                                     "properties": {"embedding": {
                                         "type": "array", "items": {"type": "number"}}}},
        "OllamaVersion": {"type": "object", "required": ["version"],
                          "properties": {"version": {"type": "string"}}},
    })

    def streamed(schema: str, what: str) -> dict:
        ok = json(ref(schema), f"{what}; with stream (the default) NDJSON: one object per "
                  "line, the last with done: true, the reason and the counts")
        ok["content"]["application/x-ndjson"] = {"schema": ref(schema)}
        return {"200": ok}

    def post(summary, request, responses):
        return {"post": op(summary, responses, body=ref(request), tag="ollama", errors=errors)}

    paths.update({
        "/api/tags": {"get": op("Models, in Ollama's listing", {"200": json(ref("OllamaTags"))},
                                tag="ollama", errors=errors)},
        "/api/ps": {"get": op("Loaded models (engines ready)",
                              {"200": json(ref("OllamaRunning"))}, tag="ollama",
                              errors=errors)},
        "/api/version": {"get": op("The server's version", {"200": json(ref("OllamaVersion"))},
                                   tag="ollama", errors=errors)},
        "/api/show": post("One model's details, template and parameters", "OllamaShowRequest",
                          {"200": json(ref("OllamaShow"))}),
        "/api/chat": post("Chat (streams NDJSON unless stream is false)",
                          "OllamaChatRequest", streamed("OllamaChatResponse", "The reply")),
        "/api/generate": post("Complete a prompt (streams NDJSON unless stream is false)",
                              "OllamaGenerateRequest",
                              streamed("OllamaGenerateResponse", "The reply")),
        "/api/embed": post("Embeddings of one input or several", "OllamaEmbedRequest",
                           {"200": json(ref("OllamaEmbedResponse"))}),
        "/api/pull": post("Pull a GGUF from the Hugging Face hub (admin): hf.co/owner/repo:QUANT "
                          "or owner/repo:file.gguf", "OllamaPullRequest",
                          streamed("OllamaPullStatus", "The last status")),
        "/api/embeddings": post("The older embeddings endpoint (one prompt)",
                                "OllamaEmbeddingsRequest",
                                {"200": json(ref("OllamaEmbeddingsResponse"))}),
    })
