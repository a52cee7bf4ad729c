"""Aliases made at run time (``bodhi/app/aliases``): create, replace, delete, list, and the
BodhiApp alias YAML for import/export. Config aliases are listed but read-only.

One rule for both kinds: ``check_alias`` (called by ``registry.validate_alias`` when given
the model directories) applies the llama-server flag allow list (server_flags.py), keeps
file-valued options inside the model directories and types request defaults with the same
JSON Schema fields as the chat request.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING

import fastjsonschema

from ..errors import BodhiAPIError, invalid
from .registry import InvalidAlias, validate_alias
from .server_flags import FlagRefused, check_extra_args, check_path

if TYPE_CHECKING:
    from .registry import ModelRegistry

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
RESERVED = {"options", "export", "import"}  # sub-routes of bodhi/app/aliases
FILE_OPTIONS = ("chat_template_file", "mmproj")


def _request_schema() -> dict:
    from ..schemas import _SAMPLING
    props = {k: v for k, v in _SAMPLING.items() if k not in ("stream", "stream_options", "n")}
    props["system_prompt"] = {"type": "string", "maxLength": 65536}
    return {"type": "object", "additionalProperties": False, "properties": props}


REQUEST_SCHEMA = _request_schema()
_check_request = fastjsonschema.compile(copy.deepcopy(REQUEST_SCHEMA))


def check_alias(name: str, spec: dict, roots: list[str]) -> None:
    """The allow list and typed defaults; raise InvalidAlias whose ``param`` names the flag
    or field. Normalises ``server.extra_args`` in place."""
    request = spec.get("request") or {}
    try:
        _check_request(request)
    except fastjsonschema.JsonSchemaValueException as e:
        field = e.path[1] if len(e.path) > 1 else None
        if field is None and "must not contain" in e.message:
            field = sorted(set(request) - set(REQUEST_SCHEMA["properties"]))[0]
            raise InvalidAlias(f"alias {name!r}: unknown request default {field!r}",
                               f"request.{field}") from None
        raise InvalidAlias(f"alias {name!r}: request default {e.message.replace('data.', '')}",
                           f"request.{field}" if field else "request") from None
    server = spec.get("server") or {}
    try:
        for key in FILE_OPTIONS:
            if server.get(key) is not None:
                check_path(server[key], key, roots)
        if "extra_args" in server:
            server["extra_args"] = check_extra_args(server["extra_args"], roots)
    except FlagRefused as e:
        raise InvalidAlias(f"alias {name!r}: {e}", e.flag) from None
    for key in ("ctx_size", "parallel"):
        if key in server and not 0 <= server[key] <= 1 << 20:
            raise InvalidAlias(f"alias {name!r}: {key} is out of range", key)


def to_json(name: str, spec: dict, source: str) -> dict:
    server = dict(spec.get("server") or {})
    return {"name": name, "model": spec.get("model"), "request": dict(spec.get("request") or {}),
            "server": server, "source": source, "targets": spec.get("targets")}


class AliasStore:
    """The aliases in the database (through the registry, which resolves them)."""

    def __init__(self, registry: ModelRegistry, supervisor=None):
        self.registry = registry
        #: engines of a changed or deleted alias are unloaded, so the next request starts
        #: one with the new options
        self.supervisor = supervisor

    # -- reading ------------------------------------------------------------------------
    def _rows(self) -> dict:
        from sqlalchemy import select

        from ..store.tables import model_aliases as t
        with self.registry.database.read() as conn:
            return {a.name: (to_json(a.name, {"model": a.model, "request": a.request_defaults,
                                               "server": a.server_options,
                                               "targets": a.targets}, a.source))
                    for a in conn.execute(select(t).order_by(t.c.name))}

    def list(self) -> list[dict]:
        return list(self._rows().values())

    def get(self, name: str) -> dict:
        alias = self._rows().get(name)
        if alias is None:
            raise BodhiAPIError(404, f"no alias named '{name}'", code="alias_not_found",
                                param="name")
        return alias

    # -- changing -----------------------------------------------------------------------
    def parse(self, body: dict, name: str | None = None) -> tuple[str, dict]:
        """A request body as (name, spec), validated; 400 naming the field or flag."""
        if not isinstance(body, dict):
            raise invalid("the body must be a JSON object")
        known = {"name", "model", "request", "server", "targets", "source"}
        for key in body:
            if key not in known:
                raise invalid(f"unknown field '{key}'", param=key)
        given = body.get("name", name)
        if name is not None and given != name:
            raise invalid("'name' cannot be changed; create a new alias", param="name")
        if not isinstance(given, str) or not NAME.match(given) or given in RESERVED:
            raise invalid("'name' must be 1-128 letters, digits or ._:- (not options, "
                          "export or import)", param="name")
        if body.get("source") not in (None, "api"):
            raise invalid("'source' is set by the server", param="source")
        spec = {k: body[k] for k in ("model", "request", "server", "targets")
                if body.get(k) is not None}
        try:
            validate_alias(given, spec, self.registry.model_roots())
        except InvalidAlias as e:
            raise invalid(str(e), param=e.param or "alias") from None
        if not self.registry.local and spec.get("targets") is None:
            raise invalid("this server runs no local models (ModelRegistry.local_models is "
                          "off): only router aliases ('targets' over remote models) can be "
                          "made here", param="model")
        return given, spec

    def _write(self, name: str, spec: dict, new: bool) -> dict:
        from sqlalchemy import select

        from ..store.tables import model_aliases as t
        values = {"model": spec.get("model"),
                  "targets": list(spec["targets"]) if spec.get("targets") else None,
                  "request_defaults": dict(spec.get("request") or {}),
                  "server_options": dict(spec.get("server") or {})}
        with self.registry.database.begin() as conn:
            row = conn.execute(select(t.c.source, *(t.c[f] for f in values))
                               .where(t.c.name == name)).first()
            if new and row is not None:
                raise BodhiAPIError(409, f"an alias named '{name}' exists", code="alias_exists",
                                    param="name")
            if not new:
                if row is None:
                    raise self._missing(name)
                if row.source == "config":
                    raise self._read_only(name)
            if row is None:
                conn.execute(t.insert().values(name=name, source="api", **values))
            elif any(getattr(row, f) != v for f, v in values.items()):  # else updated_at stays
                conn.execute(t.update().where(t.c.name == name).values(values))
        self.registry.load_aliases()  # /v1/models sees it at once
        return self.get(name)

    async def create(self, name: str, spec: dict) -> dict:
        return self._write(name, spec, new=True)

    async def replace(self, name: str, spec: dict) -> dict:
        alias = self._write(name, spec, new=False)
        await self._unload(name)
        return alias

    async def delete(self, name: str) -> None:
        self._delete(name)
        await self._unload(name)

    async def _unload(self, name: str) -> None:
        if self.supervisor is None:
            return
        for engine in [e for e in self.supervisor.engines.values() if e.model.id == name]:
            await self.supervisor.unload(engine)

    def _delete(self, name: str) -> None:
        from sqlalchemy import select

        from ..store.tables import model_aliases as t
        with self.registry.database.begin() as conn:
            row = conn.execute(select(t.c.source).where(t.c.name == name)).first()
            if row is None:
                raise self._missing(name)
            if row.source == "config":
                raise self._read_only(name)
            conn.execute(t.delete().where(t.c.name == name))
        self.registry.load_aliases()

    @staticmethod
    def _missing(name: str) -> BodhiAPIError:
        return BodhiAPIError(404, f"no alias named '{name}'", code="alias_not_found",
                             param="name")

    @staticmethod
    def _read_only(name: str) -> BodhiAPIError:
        return BodhiAPIError(409, f"alias '{name}' comes from the server's configuration and "
                             "cannot be changed here", code="alias_read_only", param="name")

    # -- BodhiApp alias YAML ---------------------------------------------------------------
    def export(self) -> list[dict]:
        return [to_bodhiapp(a) for a in self.list() if a["model"]]

    async def import_(self, items) -> dict:
        """Create new aliases, replace API ones, skip config ones and invalid entries."""
        if isinstance(items, dict):
            items = items.get("aliases", [items])
        if not isinstance(items, list) or len(items) > 1000:
            raise invalid("expected a list of aliases (at most 1000)")
        out = {"created": [], "updated": [], "skipped": []}
        existing = {a["name"]: a["source"] for a in self.list()}
        for item in items:
            name = item.get("alias") or item.get("name") if isinstance(item, dict) else None
            try:
                body = from_bodhiapp(item)
                name, spec = self.parse(body)
            except BodhiAPIError as e:
                out["skipped"].append({"name": name, "reason": e.message})
                continue
            if existing.get(name) == "config":
                out["skipped"].append({"name": name, "reason": "a config alias (read-only)"})
            elif name in existing:
                await self.replace(name, spec)
                out["updated"].append(name)
            else:
                await self.create(name, spec)
                existing[name] = "api"
                out["created"].append(name)
        return out


#: BodhiApp's request_params (snake_case, OpenAI names) that map onto ours
_REQUEST_KEYS = ("temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty",
                 "frequency_penalty")


def to_bodhiapp(alias: dict) -> dict:
    """BodhiApp's alias YAML: alias, repo, filename, snapshot, request_params and
    context_params (llama-server flags as strings). Our extras ride along as ``bodhi``."""
    model = alias["model"]
    repo, _, quant = model.partition(":")
    server = alias["server"]
    context = list(server.get("extra_args") or [])
    if "ctx_size" in server:
        context[:0] = ["--ctx-size", str(server["ctx_size"])]
    if "parallel" in server:
        context[:0] = ["--parallel", str(server["parallel"])]
    out = {"alias": alias["name"], "repo": repo if "/" in repo and quant else None,
           "filename": None, "snapshot": None, "model": model,
           "request_params": {k: v for k, v in alias["request"].items() if k in _REQUEST_KEYS},
           "context_params": _pairs(context),
           "bodhi": {"request": alias["request"], "server": server}}
    return out


def _pairs(args: list[str]) -> list[str]:
    """["--threads", "1", "--jinja"] as BodhiApp's ["--threads 1", "--jinja"]."""
    out, i = [], 0
    while i < len(args):
        if i + 1 < len(args) and not args[i + 1].startswith("-"):
            out.append(f"{args[i]} {args[i + 1]}")
            i += 2
        else:
            out.append(args[i])
            i += 1
    return out


#: BodhiApp's older alias files give ``context_params`` as llama.cpp's context fields; those
#: with a flag on the allow list (or a typed option) are kept, the rest (n_keep ...) dropped
_OLD_CONTEXT = {"n_ctx": "--ctx-size", "n_parallel": "--parallel", "n_threads": "--threads",
                "n_predict": "--n-predict", "n_seed": "--seed"}


def from_bodhiapp(item) -> dict:
    """One BodhiApp alias entry as our request body (400 when it cannot map)."""
    if not isinstance(item, dict):
        raise invalid("an alias entry must be a mapping")
    name = item.get("alias") or item.get("name")
    extra = item.get("bodhi") if isinstance(item.get("bodhi"), dict) else {}
    model = item.get("model")
    if not model:
        repo, filename = item.get("repo"), item.get("filename")
        if not (isinstance(repo, str) and isinstance(filename, str)):
            raise invalid("needs 'model', or 'repo' and 'filename'")
        from .discovery import quant_of
        quant = quant_of(filename)
        if not quant:
            raise invalid(f"cannot tell the quantisation of '{filename}'")
        model = f"{repo}:{quant}"
    request = dict(extra.get("request") or {})
    for k, v in (item.get("request_params") or {}).items():
        if k in _REQUEST_KEYS:
            request.setdefault(k, v)
    server = dict(extra.get("server") or {})
    if isinstance(item.get("chat_template"), str) and "chat_template" not in server:
        server["chat_template"] = item["chat_template"]  # a built-in template's name
    context = item.get("context_params")
    if isinstance(context, dict):  # the older shape: llama.cpp's context fields
        context = [f"{_OLD_CONTEXT[k]} {v}" for k, v in context.items() if k in _OLD_CONTEXT]
    if "extra_args" not in server and context:
        args = []
        for p in context:
            args += str(p).replace("=", " ", 1).split(None, 1)
        typed = {"--ctx-size": "ctx_size", "-c": "ctx_size", "--parallel": "parallel",
                 "-np": "parallel", "--n-gpu-layers": "gpu_layers", "-ngl": "gpu_layers"}
        rest, i = [], 0
        while i < len(args):  # the flags we keep as typed options
            key = typed.get(args[i])
            if key and i + 1 < len(args) and args[i + 1].lstrip("-").isdigit():
                server[key] = int(args[i + 1])
                i += 2
            else:
                rest.append(args[i])
                i += 1
        if rest:
            server["extra_args"] = rest
    body = {"name": name, "model": model}
    if request:
        body["request"] = request
    if server:
        body["server"] = server
    return body
