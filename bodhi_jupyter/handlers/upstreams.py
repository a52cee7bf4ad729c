"""``bodhi/app/upstreams``: remote OpenAI-compatible servers (admin to change, read to
list). Thin HTTP over ``UpstreamRegistry``; the API key is write-only."""

from __future__ import annotations

from tornado import web

from ..jsonbody import parse_json_object
from ..models.upstreams import parse_upstream
from .base import BodhiHandler, requires


class UpstreamsHandler(BodhiHandler):
    @web.authenticated
    @requires("read")
    async def get(self):
        page = self.page()
        self.finish(page.of([u.to_json() for u in self.bodhi.upstreams.list()]))

    @web.authenticated
    @requires("admin")
    async def post(self):
        spec = parse_upstream(parse_json_object(self.request.body))
        upstream = self.bodhi.upstreams.create(spec)
        self.log.info("bodhi: %s added upstream %s (%s)", self.owner, upstream.name,
                      upstream.base_url)
        self.audit("upstream.create", upstream.name, base_url=upstream.base_url,
                   models=spec["models"], prefix=spec["prefix"],
                   api_key="set" if spec.get("api_key") else "none")
        self.set_status(201)
        self.set_header("Location", f"{self.request.path.rstrip('/')}/{upstream.name}")
        self.finish(upstream.to_json())


class UpstreamHandler(BodhiHandler):
    @web.authenticated
    @requires("read")
    async def get(self, name: str):
        self.finish(self.bodhi.upstreams.get(name).to_json())

    @web.authenticated
    @requires("admin")
    async def put(self, name: str):
        before = self.bodhi.upstreams.get(name).to_json()  # 404 before judging the body
        spec = parse_upstream(parse_json_object(self.request.body), name)
        upstream = self.bodhi.upstreams.replace(name, spec)
        self.log.info("bodhi: %s replaced upstream %s", self.owner, name)
        after = upstream.to_json()
        changed = [k for k in ("base_url", "models", "prefix") if after[k] != before[k]]
        details = {"changes": {k: after[k] for k in changed},
                   "previous": {k: before[k] for k in changed}}
        if "api_key" in spec:  # absent: the key stays as it was
            details["api_key"] = "set" if spec["api_key"] else "cleared"
        self.audit("upstream.update", name, **details)
        self.finish(upstream.to_json())

    @web.authenticated
    @requires("admin")
    async def delete(self, name: str):
        before = self.bodhi.upstreams.get(name)
        self.bodhi.upstreams.delete(name)
        self.log.info("bodhi: %s deleted upstream %s", self.owner, name)
        self.audit("upstream.delete", name, base_url=before.base_url)
        self.set_status(204)
        self.finish()


class UpstreamModelsHandler(BodhiHandler):
    @web.authenticated
    @requires("read")
    async def get(self, name: str):
        """Asks the upstream now: this is also the connection check."""
        models = await self.bodhi.upstreams.fetch_models(name)
        self.finish({"name": name, "models": models})


default_handlers = [
    (r"bodhi/app/upstreams", UpstreamsHandler),
    (r"bodhi/app/upstreams/([^/]+)", UpstreamHandler),
    (r"bodhi/app/upstreams/([^/]+)/models", UpstreamModelsHandler),
]
