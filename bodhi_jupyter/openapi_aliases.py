"""OpenAPI paths of ``bodhi/app/aliases`` (aliases made at run time, the llama-server flag
allow list, BodhiApp YAML import/export), merged into the document by ``openapi.py``."""

from __future__ import annotations

from .models.aliases import REQUEST_SCHEMA


def add_alias_paths(paths: dict, schemas: dict, op, json, ref, error, path_param,
                    page_params, page_of) -> None:
    name = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"}
    server = {"type": "object", "additionalProperties": False, "properties": {
        "ctx_size": {"type": "integer", "minimum": 0, "maximum": 1 << 20},
        "parallel": {"type": "integer", "minimum": 0, "maximum": 1 << 20},
        "gpu_layers": {"type": "integer", "minimum": -1, "maximum": 100000},
        "pooling": {"type": "string", "enum": ["none", "mean", "cls", "last", "rank"]},
        "chat_template": {"type": "string", "minLength": 1, "maxLength": 256},
        "chat_template_file": {"type": "string", "minLength": 1, "maxLength": 4096,
                               "description": "a file inside the model directories"},
        "mmproj": {"type": "string", "minLength": 1, "maxLength": 4096,
                   "description": "a file inside the model directories"},
        "extra_args": {"type": "array", "maxItems": 64,
                       "items": {"type": "string", "minLength": 1, "maxLength": 4096},
                       "description": "llama-server flags from the allow list "
                       "(bodhi/app/aliases/options)"},
    }}
    model = {"type": "string", "minLength": 1, "maxLength": 1024,
             "description": "a model id or a .gguf path"}
    targets = {"type": "array", "minItems": 1, "maxItems": 16,
               "items": {"type": "string", "minLength": 1, "maxLength": 512,
                         "pattern": r"^\S+$"}}
    fields = {"model": model, "request": REQUEST_SCHEMA, "server": server, "targets": targets}
    new = {
        "Alias": {"type": "object", "required": ["name", "model", "request", "server",
                                                 "source", "targets"],
                  "properties": {"name": {"type": "string"},
                                 "model": {"type": ["string", "null"]},
                                 "request": {"type": "object"}, "server": {"type": "object"},
                                 "source": {"type": "string", "enum": ["config", "api"]},
                                 "targets": {"type": ["array", "null"],
                                             "items": {"type": "string"}}}},
        "AliasRequest": {"type": "object", "required": ["name", "model"],
                         "additionalProperties": False,
                         "properties": {"name": name, **fields}},
        "AliasUpdate": {"type": "object", "required": ["model"], "additionalProperties": False,
                        "properties": {"name": name, **fields}},
        "AliasOptions": {"type": "object", "required": ["flags", "server_options"],
                         "properties": {"flags": {"type": "array", "items": {
                             "type": "object", "required": ["flag", "value", "help"]}},
                             "server_options": {"type": "array",
                                                "items": {"type": "string"}}}},
        "AliasImportResult": {"type": "object", "required": ["created", "updated", "skipped"],
                              "properties": {
                                  "created": {"type": "array", "items": {"type": "string"}},
                                  "updated": {"type": "array", "items": {"type": "string"}},
                                  "skipped": {"type": "array", "items": {"type": "object"}}}},
    }
    clash = new.keys() & schemas.keys()
    assert not clash, f"schema names used twice: {sorted(clash)}"
    schemas.update(new)
    errors = {"400": error, "404": error}
    alias = path_param("name", "alias name")
    tag = "aliases"
    entry = {"type": "object", "additionalProperties": True,
             "description": "a BodhiApp alias: alias, repo, filename (or model), "
             "request_params, context_params"}
    import_op = op("Import aliases from BodhiApp's alias YAML (admin); config aliases and "
                   "entries that fail validation are skipped with a reason",
                   {"200": json(ref("AliasImportResult")), "400": error},
                   body={"type": "array", "maxItems": 1000, "items": entry}, tag=tag)
    import_op["requestBody"]["content"]["application/yaml"] = {"schema": {"type": "string"}}
    paths.update({
        "/app/aliases": {
            "get": op("Model aliases (config and API)",
                      {"200": json(page_of(ref("Alias"))), "400": error},
                      params=page_params, tag=tag),
            "post": op("Create an alias (admin)", {"201": json(ref("Alias"), "Created"),
                                                  "400": error, "409": error},
                       body=ref("AliasRequest"), tag=tag),
        },
        "/app/aliases/options": {"get": op(
            "The llama-server flags aliases may use and the typed server options",
            {"200": json(ref("AliasOptions"))}, tag=tag)},
        "/app/aliases/export": {"get": op(
            "Every alias as BodhiApp's alias YAML (a list)",
            {"200": {"description": "YAML", "content": {"application/yaml": {
                "schema": {"type": "array", "items": {"type": "object"}}}}}}, tag=tag)},
        "/app/aliases/import": {"post": import_op},
        "/app/aliases/{name}": {
            "get": op("One alias", {"200": json(ref("Alias")), **errors},
                      params=[alias], tag=tag),
            "put": op("Replace an API alias (admin); unloads its running engine",
                      {"200": json(ref("Alias")), **errors, "409": error}, params=[alias],
                      body=ref("AliasUpdate"), tag=tag),
            "delete": op("Delete an API alias (admin); unloads its running engine",
                         {"204": {"description": "Deleted"}, **errors, "409": error},
                         params=[alias], tag=tag),
        },
    })
