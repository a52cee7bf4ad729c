"""``bodhi/app/aliases``: model aliases made at run time (admin to change, read to list).
Thin HTTP over ``AliasStore``; config aliases are listed but read-only."""

from __future__ import annotations

import json

from tornado import web

from ..errors import invalid
from ..jsonbody import parse_json_object
from ..models.registry import SERVER_OPTION_KEYS
from ..models.server_flags import flag_options
from .base import BodhiHandler, requires

MAX_IMPORT = 1024 * 1024
#: what the audit log says of an alias that changed
ALIAS_FIELDS = ("model", "targets", "request", "server")


class AliasesHandler(BodhiHandler):
    @web.authenticated
    @requires("read")
    async def get(self):
        page = self.page()
        self.finish(page.of(self.bodhi.aliases.list()))

    @web.authenticated
    @requires("admin")
    async def post(self):
        name, spec = self.bodhi.aliases.parse(parse_json_object(self.request.body))
        alias = await self.bodhi.aliases.create(name, spec)
        self.log.info("bodhi: %s created alias %s", self.owner, name)
        self.audit("alias.create", name, **{k: alias[k] for k in ALIAS_FIELDS if alias[k]})
        self.set_status(201)
        self.finish(alias)


class AliasOptionsHandler(BodhiHandler):
    @web.authenticated
    @requires("read")
    async def get(self):
        self.finish({"flags": flag_options(), "server_options": sorted(SERVER_OPTION_KEYS)})


class AliasExportHandler(BodhiHandler):
    @web.authenticated
    @requires("read")
    async def get(self):
        import yaml
        text = yaml.safe_dump(self.bodhi.aliases.export(), sort_keys=False)
        self.set_header("Content-Type", "application/yaml; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="aliases.yaml"')
        web.RequestHandler.finish(self, text.encode())  # APIHandler.finish forces JSON


class AliasImportHandler(BodhiHandler):
    @web.authenticated
    @requires("admin")
    async def post(self):
        raw = self.request.body or b""
        if len(raw) > MAX_IMPORT:
            raise invalid("the YAML is larger than 1 MiB")
        if self.request.headers.get("Content-Type", "").startswith("application/json"):
            items = json.loads(raw) if raw.strip()[:1] == b"[" else parse_json_object(raw)
        else:
            import yaml
            try:
                items = yaml.safe_load(raw.decode("utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError) as e:
                raise invalid(f"the body is not valid YAML: {str(e)[:200]}") from None
        result = await self.bodhi.aliases.import_(items)
        self.log.info("bodhi: %s imported aliases: %d created, %d updated, %d skipped",
                      self.owner, len(result["created"]), len(result["updated"]),
                      len(result["skipped"]))
        self.audit("alias.import", None, created=result["created"],
                   updated=result["updated"],
                   skipped=[item["name"] for item in result["skipped"]])
        self.finish(result)


class AliasHandler(BodhiHandler):
    @web.authenticated
    @requires("read")
    async def get(self, name: str):
        self.finish(self.bodhi.aliases.get(name))

    @web.authenticated
    @requires("admin")
    async def put(self, name: str):
        before = self.bodhi.aliases.get(name)  # 404 before judging the body
        name, spec = self.bodhi.aliases.parse(parse_json_object(self.request.body), name)
        alias = await self.bodhi.aliases.replace(name, spec)
        self.log.info("bodhi: %s replaced alias %s", self.owner, name)
        changed = [k for k in ALIAS_FIELDS if alias[k] != before[k]]
        self.audit("alias.update", name, changes={k: alias[k] for k in changed},
                   previous={k: before[k] for k in changed})
        self.finish(alias)

    @web.authenticated
    @requires("admin")
    async def delete(self, name: str):
        before = self.bodhi.aliases.get(name)
        await self.bodhi.aliases.delete(name)
        self.log.info("bodhi: %s deleted alias %s", self.owner, name)
        self.audit("alias.delete", name, model=before["model"], targets=before["targets"])
        self.set_status(204)
        self.finish()


default_handlers = [
    (r"bodhi/app/aliases", AliasesHandler),
    (r"bodhi/app/aliases/options", AliasOptionsHandler),
    (r"bodhi/app/aliases/export", AliasExportHandler),
    (r"bodhi/app/aliases/import", AliasImportHandler),
    (r"bodhi/app/aliases/([^/]+)", AliasHandler),
]
