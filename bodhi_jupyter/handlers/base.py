"""What every bodhi handler shares: the auth resource, error JSON and SSE relaying."""

from __future__ import annotations

import json
from contextlib import contextmanager
from functools import wraps
from typing import TYPE_CHECKING

from jupyter_server.auth.utils import HTTP_METHOD_TO_AUTH_ACTION
from jupyter_server.auth.identity import User
from jupyter_server.base.call_context import CallContext
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import ensure_async
from tornado import web
from tornado.iostream import StreamClosedError

from ..auth.identity import owner_name
from ..auth.principal import Principal
from ..auth.scopes import ROLE_SCOPE, narrower
from ..auth.tokens import looks_like_token
from ..engine.process import EngineFailed
from ..engine.supervisor import CapacityError, EngineUnavailable
from ..errors import BodhiAPIError, error_type, invalid

if TYPE_CHECKING:
    from ..app import BodhiApp

AUTH_RESOURCE = "bodhi"


MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50


def int_param(raw: str | None, name: str, default: int, lo: int, hi: int) -> int:
    """A whole-number query parameter, or a 400 naming it."""
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise invalid(f"'{name}' must be an integer between {lo} and {hi}", param=name)
    return value


class Page:
    """``?page`` and ``?page_size`` of a list that can grow, and the page's JSON
    ``{"data", "total", "page", "page_size"}``."""

    def __init__(self, page: str | None = None, page_size: str | None = None):
        self.page = int_param(page, "page", 1, 1, 10**9)
        self.page_size = int_param(page_size, "page_size", DEFAULT_PAGE_SIZE, 1,
                                   MAX_PAGE_SIZE)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    def body(self, data: list, total: int) -> dict:
        return {"data": data, "total": total, "page": self.page, "page_size": self.page_size}

    def of(self, items: list) -> dict:
        return self.body(items[self.offset:self.offset + self.page_size], len(items))


def visible_owner(principal: Principal, wanted: str | None,
                  everyone_by_default: bool = False) -> str | None:
    """Whose records a listing shows; None means everyone's. Anyone sees their own; an
    admin may name another user, or ``*`` for all (and sees all by default where
    ``everyone_by_default``)."""
    admin = principal.can("admin")
    if not wanted:
        return None if admin and everyone_by_default else principal.name
    if wanted == principal.name:
        return wanted
    if not admin:
        raise BodhiAPIError(403, "Only an admin may see other users' records",
                            code="insufficient_scope", param="user")
    return None if wanted == "*" else wanted


def engine_failure_as_http(e: EngineFailed) -> BodhiAPIError:
    return BodhiAPIError(502, str(e), code="engine_error")


@contextmanager
def engine_errors_as_http():
    """The engine layer's refusals and failures as HTTP: all busy at the cap 503, an engine
    that cannot start or answer 502."""
    try:
        yield
    except EngineFailed as e:
        raise engine_failure_as_http(e) from None
    except CapacityError as e:
        raise BodhiAPIError(503, str(e), code="capacity_exceeded",
                            headers={"Retry-After": "5"}) from None
    except EngineUnavailable as e:
        headers = {"Retry-After": str(int(e.retry_after) + 1)} if e.retry_after else {}
        raise BodhiAPIError(502, str(e), code="engine_unavailable", headers=headers) from None


def requires(scope: str, *, login_only: bool = False):
    """Authorise a handler method: Jupyter's own authorizer for Jupyter logins and tokens
    (JupyterHub scopes apply there), then the bodhi scope the caller holds. ``login_only``
    refuses bodhi API tokens (managing tokens needs a person, not a token)."""

    def wrap(method):
        @wraps(method)
        async def inner(self: "BodhiHandler", *args, **kwargs):
            principal = self.principal
            if login_only and principal.is_token:
                raise BodhiAPIError(403, "API tokens cannot do this; sign in to Jupyter",
                                    code="login_required")
            if not principal.is_token:
                action = HTTP_METHOD_TO_AUTH_ACTION[self.request.method.upper()]
                allowed = await ensure_async(self.authorizer.is_authorized(
                    self, self.current_user, action, AUTH_RESOURCE))
                if not allowed:
                    raise BodhiAPIError(403, f"Not authorized to {action} {AUTH_RESOURCE}",
                                        code="forbidden")
            if not principal.can(scope):
                raise BodhiAPIError(403, f"This needs the '{scope}' scope; the caller has "
                                    f"'{principal.scope}'", code="insufficient_scope")
            return await method(self, *args, **kwargs)

        return inner

    return wrap


class BodhiHandler(APIHandler):
    """Base for bodhi endpoints: bodhi API tokens next to Jupyter's auth, scopes, and
    OpenAI-style error JSON for every failure."""

    auth_resource = AUTH_RESOURCE
    _principal: Principal | None = None

    @property
    def bodhi(self) -> BodhiApp:
        return self.settings["bodhi"]

    # -- authentication --------------------------------------------------------------------
    def bodhi_token(self) -> str | None:
        """A bodhi API token in the Authorization header, if that is what the caller sent."""
        scheme, _, value = self.request.headers.get("Authorization", "").partition(" ")
        value = value.strip()
        if scheme.lower() in ("bearer", "token") and looks_like_token(value):
            return value
        return None

    def check_xsrf_cookie(self):
        # a request carrying its own bearer token is not cookie-authenticated: no XSRF risk
        if self.bodhi_token() is not None or self._token_reused:
            return None
        return super().check_xsrf_cookie()

    _token_reused = False  # a Jupyter token verified moments ago (auth/verified_tokens.py)

    async def prepare(self):
        await self.bodhi.ready()  # storage opens in the background after start-up
        token = self.bodhi_token()
        if token is None:
            verified = self.bodhi.verified_tokens
            key = verified.key(self.request.headers)
            user = verified.get(key)
            if user is not None:  # Jupyter's identity provider skips a set user
                self._token_reused = True
                self.current_user = self._jupyter_current_user = user
            await super().prepare()
            if user is None and self.token_authenticated:
                verified.put(key, self.current_user)
            if self.current_user is not None and not self._finished:
                self.bodhi.limiter.check(self.principal)
            return
        # Jupyter's IdentityProvider does not know bodhi tokens (it would answer 403), so
        # they are recognised here, before it is asked.
        CallContext.set(CallContext.JUPYTER_HANDLER, self)
        if not self.check_host():
            raise web.HTTPError(403)
        info = self.bodhi.tokens.authenticate(token)
        role = self.bodhi.roles.role_of(info.owner, info.groups)
        self._principal = Principal(
            name=info.owner, role=role, auth_method="bodhi_token",
            scope=narrower(info.scope, ROLE_SCOPE[role]),  # never above the owner's role now
            token_id=info.id, token_name=info.name, models=info.models, groups=info.groups)
        self.current_user = self._jupyter_current_user = User(username=info.owner,
                                                              name=info.owner)
        self.bodhi.limiter.check(self._principal)  # counts against the token and its user

    @property
    def principal(self) -> Principal:
        if self._principal is None:
            user = self.current_user
            hub_user = getattr(user, "hub_user", None)
            groups = hub_user.get("groups", []) if isinstance(hub_user, dict) else []
            name = owner_name(user, self.identity_provider)
            role = self.bodhi.roles.role_of(name, groups)
            self._principal = Principal(name=name, role=role, auth_method="jupyter",
                                        scope=ROLE_SCOPE[role], groups=tuple(groups))
        return self._principal

    @property
    def owner(self) -> str:
        return self.principal.name

    def page(self) -> Page:
        return Page(self.get_query_argument("page", None),
                    self.get_query_argument("page_size", None))

    def visible_owner(self, everyone_by_default: bool = False) -> str | None:
        return visible_owner(self.principal, self.get_query_argument("user", None),
                             everyone_by_default)

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
