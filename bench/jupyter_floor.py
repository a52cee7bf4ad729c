"""Jupyter's own cost of one API request, with no bodhi code in it: a server extension
(for the benchmark's server only) with one authenticated ``APIHandler`` that reads a POST
body and answers ``{}``. bench/proxy_overhead.py times it beside the same request sent to
the engine directly and through bodhi, so the added latency can be read against what any
request to this Jupyter server costs on the machine.

    jupyter server --ServerApp.jpserver_extensions=jupyter_floor=True   # bench/ on PYTHONPATH
"""

from __future__ import annotations

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

PATH = "bench-floor"


class FloorHandler(APIHandler):
    """Jupyter's prepare (host check, auth, CORS, XSRF) and an empty JSON answer."""

    @web.authenticated
    def post(self):
        self.finish("{}")


def _jupyter_server_extension_points():
    return [{"module": "jupyter_floor"}]


def _load_jupyter_server_extension(serverapp):
    web_app = serverapp.web_app
    web_app.add_handlers(".*$", [(url_path_join(web_app.settings["base_url"], PATH),
                                  FloorHandler)])
