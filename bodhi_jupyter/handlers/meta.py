"""The API's own description."""

from tornado import web

from ..openapi import document
from .base import BodhiHandler, requires


class OpenAPIHandler(BodhiHandler):
    @web.authenticated
    @requires("read")
    async def get(self):
        self.finish(document(self.base_url))


default_handlers = [(r"bodhi/openapi.json", OpenAPIHandler)]
