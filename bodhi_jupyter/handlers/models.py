"""``bodhi/app/models``: what the panel's model picker needs beyond ``/v1/models`` — where
each model comes from (alias, Hugging Face cache, directory, package), what its file says
(architecture, size, capabilities ...) and the request defaults that apply where a
conversation leaves a parameter unset."""

from __future__ import annotations

from tornado import web

from ..models.capabilities import model_fields
from .base import BodhiHandler, requires

#: request defaults the panel shows next to its per-conversation parameters
SHOWN_DEFAULTS = ("system_prompt", "temperature", "top_p", "max_tokens", "seed", "stop")


def model_json(model) -> dict:
    defaults = {k: v for k, v in model.request_defaults.items() if k in SHOWN_DEFAULTS}
    return {"id": model.id, **model_fields(model), "request_defaults": defaults}


class AppModelsHandler(BodhiHandler):
    @web.authenticated
    @requires("read")
    async def get(self):
        page = self.page()
        await self.bodhi.registry.rescan()  # as /v1/models: new files show within seconds
        await self.bodhi.upstreams.refresh_stale()
        models = [model_json(m) for m in self.bodhi.registry.list_models()
                  if self.principal.may_use_model(m.id)]
        self.finish(page.of(models))


default_handlers = [(r"bodhi/app/models", AppModelsHandler)]
