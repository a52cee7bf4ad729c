"""OpenAPI paths of ``bodhi/app/upstreams`` (remote OpenAI-compatible servers), merged into
the document by ``openapi.py``."""

from __future__ import annotations

from .models.upstreams import MAX_MODELS


def add_upstream_paths(paths: dict, schemas: dict, op, json, ref, error, path_param,
                       page_params, page_of) -> None:
    time = {"type": ["string", "null"], "format": "date-time"}
    name = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
    models = {"type": ["array", "null"], "minItems": 1, "maxItems": MAX_MODELS,
              "items": {"type": "string", "minLength": 1, "maxLength": 512,
                        "pattern": r"^\S+$"}}
    fields = {
        "base_url": {"type": "string", "minLength": 8, "maxLength": 2048,
                     "pattern": r"^https?://\S+$",
                     "description": "as the OpenAI client's base_url, e.g. "
                     "https://api.example.com/v1"},
        "api_key": {"type": ["string", "null"], "minLength": 1, "maxLength": 4096,
                    "pattern": r"^\S+$", "writeOnly": True,
                    "description": "stored encrypted, never returned; omit on PUT to keep "
                    "it, null to remove it"},
        "models": models,
        "prefix": {"type": ["string", "null"], "maxLength": 255, "pattern": r"^\S*$",
                   "description": "model names are <prefix><model>; null: '<name>/'"},
    }
    new = {
        "Upstream": {"type": "object", "required": ["name", "base_url", "models", "prefix",
                                                    "has_api_key", "source",
                                                    "created_at", "updated_at"],
                     "properties": {"name": {"type": "string"}, "base_url": {"type": "string"},
                                    "models": {"type": ["array", "null"],
                                               "items": {"type": "string"}},
                                    "prefix": {"type": ["string", "null"]},
                                    "has_api_key": {"type": "boolean"},
                                    "source": {"type": "string", "enum": ["api", "config"],
                                               "description": "config: declared in "
                                               "UpstreamRegistry.upstreams, read-only here"},
                                    "created_at": time, "updated_at": time}},
        "UpstreamRequest": {"type": "object", "required": ["name", "base_url"],
                            "additionalProperties": False,
                            "properties": {"name": name, **fields}},
        "UpstreamUpdate": {"type": "object", "required": ["base_url"],
                           "additionalProperties": False,
                           "properties": {"name": name, **fields}},
        "UpstreamModels": {"type": "object", "required": ["name", "models"], "properties": {
            "name": {"type": "string"}, "models": {"type": "array",
                                                   "items": {"type": "string"}}}},
    }
    clash = new.keys() & schemas.keys()
    assert not clash, f"schema names used twice: {sorted(clash)}"
    schemas.update(new)
    errors = {"400": error, "404": error}
    upstream = path_param("name", "upstream name")
    tag = "upstreams"
    paths.update({
        "/app/upstreams": {
            "get": op("Remote OpenAI-compatible upstreams (never their keys)",
                      {"200": json(page_of(ref("Upstream"))), "400": error},
                      params=page_params, tag=tag),
            "post": op("Add an upstream (admin); contacts nothing until its models are "
                       "listed", {"201": json(ref("Upstream"), "Created"), "400": error,
                                  "409": error}, body=ref("UpstreamRequest"), tag=tag),
        },
        "/app/upstreams/{name}": {
            "get": op("One upstream", {"200": json(ref("Upstream")), **errors},
                      params=[upstream], tag=tag),
            "put": op("Replace an upstream (admin); without api_key the key is kept",
                      {"200": json(ref("Upstream")), **errors, "409": error}, params=[upstream],
                      body=ref("UpstreamUpdate"), tag=tag),
            "delete": op("Remove an upstream (admin)", {"204": {"description": "Deleted"},
                                                        **errors, "409": error},
                         params=[upstream], tag=tag),
        },
        "/app/upstreams/{name}/models": {"get": op(
            "The models the upstream reports now (checks the connection and the key)",
            {"200": json(ref("UpstreamModels")), **errors, "502": error},
            params=[upstream], tag=tag)},
    })
