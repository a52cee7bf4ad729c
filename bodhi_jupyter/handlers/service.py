"""The shared service's browser entry (bodhi_jupyter/service.py): the API answers 403 rather
than redirect an API client to a login page, so a browser signs in here first."""

from __future__ import annotations

from urllib.parse import urlsplit

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web


class ServiceLoginHandler(JupyterHandler):
    """``GET bodhi/login?next=<path>``: without a session, the hub's OAuth login (the hub's
    identity provider redirects); with one, on to ``next`` (a path of this service only)
    or to ``bodhi/app/user``."""

    @web.authenticated
    def get(self):
        default = url_path_join(self.base_url, "bodhi/app/user")
        wanted = self.get_argument("next", "")
        parts = urlsplit(wanted)
        local = (not parts.scheme and not parts.netloc and wanted.startswith(self.base_url)
                 and "\\" not in wanted)
        self.redirect(wanted if local else default)


default_handlers = [(r"bodhi/login", ServiceLoginHandler)]
