"""What every bodhi handler shares: the auth resource, error JSON and SSE relaying."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.iostream import StreamClosedError

from ..auth.identity import owner_name
from ..errors import BodhiAPIError, error_type

if TYPE_CHECKING:
    from ..app import BodhiApp

AUTH_RESOURCE = "bodhi"


class BodhiHandler(APIHandler):
    """Base for bodhi endpoints: every failure becomes OpenAI-style error JSON."""

    auth_resource = AUTH_RESOURCE

    @property
    def bodhi(self) -> BodhiApp:
        return self.settings["bodhi"]

    @property
    def owner(self) -> str:
        return owner_name(self.current_user, self.identity_provider)

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, BodhiAPIError):
            err = exc
        else:
            message = getattr(exc, "log_message", None) or self._reason
            if status_code == 403 and not message:
                message = "Forbidden"
            if exc is not None and not isinstance(exc, web.HTTPError):
                message = "Internal server error"
            err = BodhiAPIError(status_code, message, type=error_type(status_code))
        for name, value in err.headers.items():
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(err.body()))

    def send_error(self, status_code: int = 500, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, BodhiAPIError):
            status_code = exc.status
            self.set_status(status_code)
        super().send_error(status_code, **kwargs)

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, BodhiAPIError):
            self.log.info("bodhi: %s %s -> %s %s", self.request.method, self.request.path,
                          value.status, value.message.splitlines()[0][:300])
            return
        super().log_exception(typ, value, tb)

    # -- server-sent events ----------------------------------------------------------------
    def start_event_stream(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        # each event is a small write: without this, Nagle's algorithm holds it back
        self.request.connection.stream.set_nodelay(True)

    async def send_event_bytes(self, data: bytes) -> bool:
        """Write and flush at once; False when the client has gone."""
        if self.request.connection.stream.closed():
            return False
        try:
            self.write(data)
            await self.flush()
        except StreamClosedError:
            return False
        return True

    @staticmethod
    def error_event(err: BodhiAPIError) -> bytes:
        return b"data: " + json.dumps(err.body()).encode() + b"\n\n"


class NotFoundHandler(BodhiHandler):
    """Unknown paths under bodhi/ answer JSON, not Jupyter's HTML 404 page."""

    @web.authenticated
    def prepare_404(self, *args):
        raise BodhiAPIError(404, f"No such endpoint: {self.request.path}", code="not_found")

    get = post = put = delete = patch = prepare_404
