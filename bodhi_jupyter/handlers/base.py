"""What every bodhi handler shares: the auth resource, error JSON and SSE relaying."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import contextmanager
from functools import wraps
from typing import TYPE_CHECKING

from jupyter_server.auth.utils import HTTP_METHOD_TO_AUTH_ACTION
from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.base.handlers import APIHandler
from jupyter_server.prometheus.log_functions import prometheus_log_method
from jupyter_server.utils import ensure_async
from tornado import web
from tornado.iostream import StreamClosedError

from ..auth.identity import owner_name
from ..auth.principal import Principal
from ..auth.scopes import ROLE_SCOPE, includes, narrower
from ..auth.tokens import looks_like_token
from ..errors import BodhiAPIError, as_http, error_type, invalid
from ..request_id import bind_request_id, request_id_from
from .stream_writer import StreamWriter

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


@contextmanager
def domain_errors_as_http():
    """Domain errors (unknown model, all engines busy at the cap, a failing engine) as
    BodhiAPIError, by the one mapping in ``errors.as_http``. Handlers need it only where
    they look at the status themselves; anything that escapes a handler is mapped the same
    way by ``BodhiHandler.send_error``."""
    try:
        yield
    except Exception as e:
        err = as_http(e)
        if err is None or err is e:
            raise
        raise err from None




def requires(scope: str, *, login_only: bool = False, from_notebook: bool = False):
    """Authorise a handler method: Jupyter's own authorizer for Jupyter logins and tokens
    (JupyterHub scopes apply there), then the bodhi scope the caller holds. ``login_only``
    refuses bodhi API tokens (managing tokens needs a person, not a token);
    ``from_notebook`` lets a kernel's own credential do it when its owner's role may (a
    pull started from a notebook: the kernel token itself only holds ``write``)."""

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
            if not (principal.can(scope) or (from_notebook and principal.kernel
                                             and includes(ROLE_SCOPE[principal.role], scope))):
                raise BodhiAPIError(403, f"This needs the '{scope}' scope; the caller has "
                                    f"'{principal.scope}'", code="insufficient_scope")
            return await method(self, *args, **kwargs)

        return inner

    return wrap


#: what an API client sends its key in; answered with a 401 that names the scheme
WWW_AUTHENTICATE = 'Bearer realm="bodhi"'


def invalid_api_key() -> BodhiAPIError:
    """OpenAI's answer to a missing or wrong key (its SDKs raise AuthenticationError)."""
    return BodhiAPIError(
        401, "Invalid or missing API key. Send a Jupyter token or a bodhi API token as "
        "'Authorization: Bearer <key>'.", code="invalid_api_key", type="invalid_request_error",
        headers={"WWW-Authenticate": WWW_AUTHENTICATE})


def _refused_known_user(handler) -> bool:
    """JupyterHub's provider knows the caller but refuses them (no access to this server):
    it then replaces the handler's ``redirect`` so that the refusal becomes a 403. That
    person sent a valid key, so they get 403, not 401."""
    return "redirect" in vars(handler)


class HandlerIdentity:
    """The server's IdentityProvider as a bodhi handler sees it: bodhi API tokens are
    recognised first (the server's provider does not know them and would refuse them),
    everything else is the server's provider's answer. The server-wide provider (which
    JupyterHub sets) is never replaced; Jupyter's own ``prepare`` (host check, CORS, XSRF,
    origin) runs for every caller through its public hooks."""

    def __init__(self, inner: IdentityProvider):
        self.inner = inner
        # only Jupyter's own providers, whose token handling is known: JupyterHub's keeps
        # its own cache of token owners and marks token requests for its XSRF check itself
        self.reuses_tokens = type(inner).__module__ == IdentityProvider.__module__

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def get_user(self, handler: "BodhiHandler") -> User | None:
        token = handler.bodhi_token()
        if token is not None:
            return handler.sign_in_with_bodhi_token(token)
        # a Jupyter token the server's provider accepted moments ago: skip its per-request
        # work (token check, a fresh anonymous user, a login cookie API clients never use)
        if self.reuses_tokens:
            verified = handler.bodhi.verified_tokens
            user = verified.get(verified.key(handler.request.headers))
            if user is not None:
                handler.jupyter_token_reused = True
                return user
        user = await ensure_async(self.inner.get_user(handler))
        if (user is None and handler.api_key_clients and handler.request.method != "OPTIONS"
                and not _refused_known_user(handler)):
            raise invalid_api_key()  # before Jupyter's XSRF check would say 403
        return user

    def is_token_authenticated(self, handler: "BodhiHandler") -> bool:
        return (handler.bodhi_token() is not None or handler.jupyter_token_reused
                or self.inner.is_token_authenticated(handler))

    def should_check_origin(self, handler: "BodhiHandler") -> bool:
        return handler.bodhi_token() is None and self.inner.should_check_origin(handler)


class _RequestLog(logging.LoggerAdapter):
    """Every line a handler logs (Jupyter's access line too) ends with its request id."""

    def process(self, msg, kwargs):
        return f"{msg} [request_id={self.extra['request_id']}]", kwargs

    def isEnabledFor(self, level: int) -> bool:
        # traitlets leaves an Application's logger at DEBUG and filters in its handlers, so
        # each success's access line (debug) was formatted into a record and then dropped.
        # A level no handler would emit is not logged at all.
        return self.logger.isEnabledFor(level) and level >= lowest_handler_level(self.logger)


def lowest_handler_level(logger: logging.Logger) -> int:
    """The lowest level any handler that sees ``logger``'s records emits (0 if none: then
    ``logging.lastResort`` or nothing decides, and this filters nothing)."""
    levels = []
    node: logging.Logger | None = logger
    while node is not None:
        levels.extend(h.level for h in node.handlers)
        node = node.parent if node.propagate else None
    return min(levels, default=0)


class BodhiHandler(APIHandler):
    """Base for bodhi endpoints: bodhi API tokens next to Jupyter's auth, scopes, request
    ids, server activity, and OpenAI-style error JSON for every failure."""

    auth_resource = AUTH_RESOURCE
    #: the callers are API clients (OpenAI or Ollama SDKs, LiteLLM): no credential, or one
    #: that authenticates nobody, gets 401 ``invalid_api_key`` rather than Jupyter's 403
    api_key_clients = False
    _principal: Principal | None = None
    _request_id: str | None = None
    _request_log: logging.LoggerAdapter | None = None

    @property
    def bodhi(self) -> BodhiApp:
        return self.settings["bodhi"]

    # -- request id ------------------------------------------------------------------------
    @property
    def request_id(self) -> str:
        """The client's own ``X-Request-Id`` if it is sane, else a short random one."""
        if self._request_id is None:
            self._request_id = request_id_from(self.request.headers.get("X-Request-Id"))
        return self._request_id

    def set_default_headers(self) -> None:
        super().set_default_headers()  # also runs again when an error clears the headers
        self.set_header("X-Request-Id", self.request_id)

    @property
    def log(self) -> logging.LoggerAdapter:
        if self._request_log is None:
            self._request_log = _RequestLog(super().log, {"request_id": self.request_id})
        return self._request_log

    # -- authentication --------------------------------------------------------------------
    @property
    def identity_provider(self) -> HandlerIdentity:
        inner = super().identity_provider
        wrapped = self.settings.get("bodhi_identity")
        if wrapped is None or wrapped.inner is not inner:
            wrapped = self.settings["bodhi_identity"] = HandlerIdentity(inner)
        return wrapped

    _bodhi_token: str | None | bool = False  # False: not looked at yet

    def bodhi_token(self) -> str | None:
        """A bodhi API token in the Authorization header, or in ``x-api-key`` (where the
        anthropic SDK puts its key), if that is what the caller sent. (Read once: the
        auth, XSRF and origin checks each ask.)"""
        if self._bodhi_token is False:
            self._bodhi_token = self._find_bodhi_token()
        return self._bodhi_token

    def _find_bodhi_token(self) -> str | None:
        scheme, _, value = self.request.headers.get("Authorization", "").partition(" ")
        value = value.strip()
        if scheme.lower() in ("bearer", "token") and looks_like_token(value):
            return value
        value = self.request.headers.get("X-Api-Key", "").strip()
        if looks_like_token(value):
            return value
        return None

    def sign_in_with_bodhi_token(self, token: str) -> User:
        """The token's owner as a Jupyter user, or a 401 naming why the token is refused."""
        info = self.bodhi.tokens.authenticate(token)
        role = self.bodhi.roles.role_of(info.owner, info.groups)
        self._principal = Principal(
            name=info.owner, role=role, auth_method="bodhi_token",
            scope=narrower(info.scope, ROLE_SCOPE[role]),  # never above the owner's role now
            token_id=info.id, token_name=info.name, models=info.models, groups=info.groups,
            notebook=info.notebook, kernel=info.for_kernel)
        return User(username=info.owner, name=info.owner)

    def check_xsrf_cookie(self) -> None:
        """A bodhi token travels in a header a browser never adds by itself: no XSRF check.
        (JupyterHub replaces jupyter_server's check with one that knows only hub tokens, so
        the server's own ``token_authenticated`` shortcut is not enough there.)"""
        if self.bodhi_token() is not None:
            return None
        return super().check_xsrf_cookie()

    #: set when the caller's Jupyter token was verified moments ago (auth/verified_tokens.py)
    jupyter_token_reused = False

    async def prepare(self):
        bind_request_id(self.request_id)  # engine start-up lines of this request carry it
        await self.bodhi.ready()  # storage opens in the background after start-up
        await super().prepare()
        if (self.identity_provider.reuses_tokens and self.current_user is not None
                and self.token_authenticated
                and not (self.jupyter_token_reused or self.bodhi_token())):
            verified = self.bodhi.verified_tokens
            verified.put(verified.key(self.request.headers), self.current_user)
        if self.current_user is not None and not self._finished:
            # the API counts as use of the server (JupyterHub's culler reads this); the
            # stream handlers bypass APIHandler.finish, so it is counted here and at the end
            self.update_api_activity()
            self.bodhi.limiter.check(self.principal)  # a token counts against its user too

    def on_finish(self) -> None:
        self.update_api_activity()  # counts only requests that authenticated
        super().on_finish()

    def _log(self) -> None:
        # (tornado keeps RequestHandler._log for handlers that override it.) Jupyter logs a
        # success's access line at debug level; where that level is not emitted, the line
        # is not built (its URI scrubbing alone costs more than the rest of the request's
        # bookkeeping), and only Jupyter's request-duration metric is recorded.
        if self.get_status() < 300 and not self.log.isEnabledFor(logging.DEBUG):
            if getattr(self.serverapp, "record_http_request_metrics", True):
                prometheus_log_method(self)
            return
        super()._log()

    @property
    def principal(self) -> Principal:
        if self._principal is None:
            user = self.current_user
            hub_user = getattr(user, "hub_user", None)
            hub_user = hub_user if isinstance(hub_user, dict) else {}
            groups = hub_user.get("groups") or []
            name = owner_name(user, self.identity_provider.inner)
            role = self.bodhi.roles.role_of(name, groups, hub_admin=bool(hub_user.get("admin")),
                                            scopes=hub_user.get("scopes") or ())
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

    # -- audit -----------------------------------------------------------------------------
    @property
    def credential(self) -> str:
        """Which credential made the request, as the audit log names it: a bodhi token by
        its id (never the token), else "hub" when JupyterHub vouched for the caller (hub
        login or hub token), else "jupyter" (a Jupyter login or the server's token)."""
        p = self.principal
        if p.is_token:
            return f"bodhi_token:{p.token_id}"
        return "hub" if getattr(self.current_user, "hub_user", None) is not None else "jupyter"

    def audit_caller(self) -> dict:
        """The keyword arguments of ``AuditLog.record`` that describe this request's caller
        (for code that records outside ``audit``, such as quota refusals)."""
        return {"actor": self.principal.name, "via": self.credential,
                "address": self.request.remote_ip, "request_id": self.request_id}

    def audit(self, action: str, target: str | None = None, **details) -> None:
        """Record one audit entry for a change this request made (call it once the change
        succeeded); details are field names and non-secret values."""
        self.bodhi.audit.record(action, target=target, details=details, **self.audit_caller())

    def error_body(self, err: BodhiAPIError) -> dict:
        """The error JSON of this route's API family (OpenAI's unless overridden)."""
        return err.body()

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        err = as_http(exc)
        if err is None:
            message = getattr(exc, "log_message", None) or self._reason
            if status_code == 403 and not message:
                message = "Forbidden"
            if exc is not None and not isinstance(exc, web.HTTPError):
                message = "Internal server error"
            err = BodhiAPIError(status_code, message, type=error_type(status_code))
        for name, value in err.headers.items():
            self.set_header(name, value)
        if err.status == 401 and "WWW-Authenticate" not in err.headers:
            self.set_header("WWW-Authenticate", WWW_AUTHENTICATE)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.error_body(err)))

    def send_error(self, status_code: int = 500, **kwargs) -> None:
        err = as_http(kwargs.get("exc_info", (None, None, None))[1])
        if err is not None:
            status_code = err.status
            self.set_status(status_code)
        super().send_error(status_code, **kwargs)

    def log_exception(self, typ, value, tb) -> None:
        err = as_http(value)
        if err is not None:
            self.log.info("bodhi: %s %s -> %s %s", self.request.method, self.request.path,
                          err.status, (err.message.splitlines() or [""])[0][:300])
            return
        super().log_exception(typ, value, tb)

    # -- server-sent events ----------------------------------------------------------------
    def start_event_stream(self, on_gone: Callable[[], None],
                           content_type: str = "text/event-stream; charset=utf-8"
                           ) -> StreamWriter:
        """Send a stream's status and headers now; the writer takes its pieces."""
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        # each event is a small write: without this, Nagle's algorithm holds it back
        self.request.connection.stream.set_nodelay(True)
        writer = StreamWriter(self, on_gone)
        writer.start()
        return writer

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

    def error_event(self, err: BodhiAPIError) -> bytes:
        """The last event of a stream the engine broke off."""
        return b"data: " + json.dumps(self.error_body(err)).encode() + b"\n\n"


class NotFoundHandler(BodhiHandler):
    """Unknown paths under bodhi/ answer JSON, not Jupyter's HTML 404 page."""

    @web.authenticated
    def prepare_404(self, *args):
        raise BodhiAPIError(404, f"No such endpoint: {self.request.path}", code="not_found")

    get = post = put = delete = patch = prepare_404
