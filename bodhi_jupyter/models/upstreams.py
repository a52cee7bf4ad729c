"""Remote OpenAI-compatible servers ("upstreams") whose models bodhi serves next to local ones.

An upstream is ``{name, base_url, api_key?, models? , prefix?}``, kept in the ``upstreams``
table. Its API key is stored only Fernet-encrypted; the Fernet key comes from
``UpstreamRegistry.secret_key`` or a file (created with mode 0600), never the database, so a
copy of the database yields no key. Keys are never returned or logged.

Upstreams can also come from config (``UpstreamRegistry.upstreams``): kept in memory, not in
the database, their keys read from environment variables at storage open, so a deployment
declares its engine fleet without putting a secret in a config file or the database. They
are listed (``source: "config"``) but cannot be changed or deleted through the API.

Its models are listed as ``<prefix><model>`` (prefix default ``<name>/``): the configured
``models``, or what its ``GET <base_url>/models`` reports. That list is fetched lazily (a
listing or an unknown prefixed name asks for it), throttled, shared by concurrent callers,
and a listing waits for it at most ``list_wait`` seconds; creating an upstream contacts
nothing.

Requests go to ``<base_url><path without /v1>`` with ``Authorization: Bearer <key>`` and
nothing else of the client's. Plain http reuses the engines' own keep-alive connection code
(:mod:`..engine.upstream`); https goes through httpx, whose raw byte iterator hands each
network read on as it arrives, so streams flush as local ones do.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from jupyter_core.paths import jupyter_data_dir
from traitlets import Dict, Float, Unicode, default
from traitlets.config import LoggingConfigurable

from ..engine.process import EngineFailed
from ..engine.upstream import UpstreamError, UpstreamPool
from ..errors import BodhiAPIError, invalid

if TYPE_CHECKING:
    from ..store.database import Database

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_MODELS = 1000
FIELDS = ("name", "base_url", "api_key", "models", "prefix")
#: the fields of a configured upstream: the key only by the name of its environment variable
CONFIG_FIELDS = ("base_url", "api_key_env", "models", "prefix")


@dataclass(frozen=True)
class RemoteModel:
    """A model an upstream serves: ``id`` as clients name it, ``model`` as the upstream does."""

    id: str
    upstream: str
    model: str


@dataclass(frozen=True)
class Upstream:
    """What the API shows of an upstream: never its key, only whether it has one."""

    name: str
    base_url: str
    models: tuple[str, ...] | None
    prefix: str | None
    has_api_key: bool
    created_at: datetime | None = None
    updated_at: datetime | None = None
    #: "api" (stored), "config" (UpstreamRegistry.upstreams) or "service" (the hub's)
    source: str = "api"

    @property
    def effective_prefix(self) -> str:
        return f"{self.name}/" if self.prefix is None else self.prefix

    def to_json(self) -> dict:
        return {"name": self.name, "base_url": self.base_url,
                "models": list(self.models) if self.models is not None else None,
                "prefix": self.prefix, "has_api_key": self.has_api_key,
                "source": self.source, "created_at": _iso(self.created_at),
                "updated_at": _iso(self.updated_at)}


def _iso(t: datetime | None) -> str | None:
    if t is not None and t.tzinfo is None:  # SQLite hands back naive UTC times
        t = t.replace(tzinfo=timezone.utc)
    return None if t is None else t.isoformat()


# -- validation --------------------------------------------------------------------------------
def check_base_url(value) -> str:
    """An http(s) URL with a host and no credentials, query or fragment; no trailing slash."""
    if not isinstance(value, str) or not value or len(value) > 2048:
        raise invalid("'base_url' must be an http or https URL", param="base_url")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise invalid("'base_url' is not a valid URL", param="base_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid("'base_url' must be an http or https URL with a host, such as "
                      "https://api.example.com/v1", param="base_url")
    if parts.username is not None or parts.password is not None:
        raise invalid("'base_url' must not carry credentials; send the key as 'api_key'",
                      param="base_url")
    if parts.query or parts.fragment or any(c.isspace() for c in value):
        raise invalid("'base_url' must not have a query, fragment or spaces",
                      param="base_url")
    del port  # parsed only to reject a bad one
    return value.rstrip("/")


def parse_upstream(body: dict, name: str | None = None) -> dict:
    """The fields of a create (``name`` in the body) or a replace (``name`` from the path;
    the body may repeat it). ``api_key`` absent means: keep the current one."""
    unknown = set(body) - set(FIELDS)
    if unknown:
        first = sorted(unknown)[0]
        raise invalid(f"unknown field '{first}'; known: {', '.join(FIELDS)}", param=first)
    given = body.get("name", name)
    if name is not None and given != name:
        raise invalid("'name' cannot be changed; create a new upstream", param="name")
    if not isinstance(given, str) or not NAME.match(given):
        raise invalid("'name' must be 1-64 letters, digits, '.', '_' or '-', starting with a "
                      "letter or digit", param="name")
    out = {"name": given, "base_url": check_base_url(body.get("base_url"))}
    models = body.get("models")
    if models is not None:
        if (not isinstance(models, list) or not 1 <= len(models) <= MAX_MODELS
                or not all(isinstance(m, str) and m and len(m) <= 512
                           and not any(c.isspace() for c in m) for m in models)):
            raise invalid(f"'models' must be null or a list of 1-{MAX_MODELS} model names "
                          "without spaces", param="models")
        models = list(dict.fromkeys(models))
    out["models"] = models
    prefix = body.get("prefix")
    if prefix is not None and (not isinstance(prefix, str) or len(prefix) > 255
                               or any(c.isspace() for c in prefix)):
        raise invalid("'prefix' must be null or a string without spaces (at most 255)",
                      param="prefix")
    out["prefix"] = prefix
    if "api_key" in body:
        key = body["api_key"]
        if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 4096
                                or any(c.isspace() for c in key)):
            raise invalid("'api_key' must be null or a non-empty string without spaces",
                          param="api_key")
        out["api_key"] = key
    return out


def parse_config_upstream(name: str, spec) -> tuple[dict, str | None]:
    """A configured upstream's fields (as :func:`parse_upstream`) and the name of the
    environment variable holding its key; a ValueError says what is wrong."""
    if not isinstance(spec, dict):
        raise ValueError(f"upstream {name!r}: must be a dict of {', '.join(CONFIG_FIELDS)}")
    if "api_key" in spec:
        raise ValueError(f"upstream {name!r}: a key is never written in config; put it in an "
                         "environment variable and name that with 'api_key_env'")
    unknown = set(spec) - set(CONFIG_FIELDS)
    if unknown:
        raise ValueError(f"upstream {name!r}: unknown field {sorted(unknown)[0]!r}; known: "
                         f"{', '.join(CONFIG_FIELDS)}")
    env = spec.get("api_key_env")
    if env is not None and (not isinstance(env, str) or not re.match(r"^[A-Za-z_]\w*$", env)):
        raise ValueError(f"upstream {name!r}: 'api_key_env' must be an environment "
                         "variable name")
    body = {k: v for k, v in spec.items() if k != "api_key_env"}
    try:
        return parse_upstream({**body, "name": name}), env
    except BodhiAPIError as e:
        raise ValueError(f"upstream {name!r}: {e.message}") from None


def not_found(name: str) -> BodhiAPIError:
    return BodhiAPIError(404, f"No upstream named '{name}'", code="upstream_not_found")


# -- transports ----------------------------------------------------------------------------------
class _HttpxResponse:
    """An httpx streaming response with the interface of ``engine.upstream.UpstreamResponse``
    (status, headers, read, relay, close)."""

    def __init__(self, resp, on_failure):
        self._resp, self._on_failure = resp, on_failure
        self.status, self.reason = resp.status_code, resp.reason_phrase
        self.headers = {k.lower(): v for k, v in resp.headers.items()}
        self._closed = False

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    async def read(self) -> bytes:
        parts = []
        await self.relay(parts.append)
        return b"".join(parts)

    #: a remote's stream is relayed on the event loop (``UpstreamResponse.relays_in_thread``)
    relays_in_thread = False

    async def relay(self, sink, in_thread: bool = False) -> None:
        import httpx

        try:
            async for piece in self._resp.aiter_raw():
                pending = sink(piece)
                if pending is not None and not pending.done():
                    await pending
        except (httpx.HTTPError, OSError) as e:
            if self._closed:
                raise UpstreamError("closed by its consumer") from None
            raise await self._on_failure(e) from None
        finally:
            await self._resp.aclose()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            asyncio.ensure_future(self._resp.aclose())


class _Live:
    """An upstream in memory: its view, its decrypted key and a connection to it."""

    def __init__(self, view: Upstream, api_key: str | None, registry: "UpstreamRegistry"):
        self.view, self.api_key, self.registry = view, api_key, registry
        parts = urlsplit(view.base_url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.base_path = parts.path.rstrip("/")
        self.where = f"{parts.scheme}://{parts.netloc}"  # for messages: no path, no key
        self._pool: UpstreamPool | None = None
        self._client = None
        self.fetched: tuple[str, ...] | None = None  # GET /models, when not configured
        self.fetched_at: float | None = None
        self.fetch_error: str | None = None
        self.fetching: asyncio.Future | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._client is not None:
            try:
                asyncio.get_running_loop().create_task(self._client.aclose())
            except RuntimeError:  # no loop (a test, the storage thread): sockets go with GC
                pass

    def path(self, path: str) -> str:
        """An OpenAI path (``/v1/chat/completions``) under this upstream's base URL, which
        already holds the API version as the OpenAI client's ``base_url`` does."""
        return self.base_path + (path[3:] if path.startswith("/v1/") else path)

    async def request(self, method: str, path: str, payload: bytes, model_id: str):
        async def failure(error: Exception) -> EngineFailed:
            return EngineFailed(model_id, f"the upstream '{self.view.name}' broke off: "
                                f"{type(error).__name__}")

        timeout = self.registry.request_timeout
        if not self.https:
            if self._pool is None:
                self._pool = UpstreamPool(self.host, self.port, self.api_key, keep_spare=False)
            try:
                return await self._pool.request(method, self.path(path), payload,
                                                timeout=timeout, on_failure=failure,
                                                connect_timeout=self.registry.connect_timeout)
            except UpstreamError as e:
                raise self.unreachable(e) from None
        import httpx

        if self._client is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.AsyncClient(
                headers=headers, verify=self.registry.tls_verify(),
                timeout=httpx.Timeout(timeout, connect=self.registry.connect_timeout))
        url = f"{self.where}{self.path(path)}"
        content_type = {"Content-Type": "application/json"} if payload else {}
        try:
            req = self._client.build_request(method, url, content=payload or None,
                                             headers=content_type)
            resp = await self._client.send(req, stream=True)
        except (httpx.HTTPError, OSError) as e:
            raise self.unreachable(e) from None
        return _HttpxResponse(resp, failure)

    def unreachable(self, error: Exception) -> BodhiAPIError:
        cause = str(error).split(": ", 1)[-1] if isinstance(error, UpstreamError) else (
            f"{type(error).__name__} {error}"[:300])
        if self.api_key:
            cause = cause.replace(self.api_key, "***")
        return BodhiAPIError(502, f"The upstream '{self.view.name}' ({self.where}) could not "
                             f"be reached: {cause}", code="upstream_unreachable")


class RemoteForwarder:
    """What the inference handler forwards to for a remote model: ``forward`` as an engine's."""

    def __init__(self, live: _Live, model: RemoteModel):
        self.live, self.model = live, model

    async def forward(self, path: str, payload: bytes):
        return await self.live.request("POST", path, payload, self.model.id)


# -- the registry ----------------------------------------------------------------------------
class UpstreamRegistry(LoggingConfigurable):
    """CRUD of upstreams, their encrypted keys, and the remote model names they provide."""

    secret_key = Unicode(
        "", help="Fernet key (urlsafe base64 of 32 bytes) that encrypts upstream API keys in "
        "the database. Empty: read from secret_key_file, which is created on first use. Keep "
        "it out of the database: whoever has both can read the keys. Prefer the file: "
        "config values show in Jupyter's debug log.",
    ).tag(config=True)

    secret_key_file = Unicode(
        help="File holding the Fernet key when secret_key is empty; created with mode 0600. "
        "Default: <Jupyter data dir>/bodhi/secret.key.",
    ).tag(config=True)

    @default("secret_key_file")
    def _default_secret_key_file(self):
        return str(Path(jupyter_data_dir()) / "bodhi" / "secret.key")

    models_refresh_interval = Float(
        300.0, help="Seconds a model list fetched from an upstream's GET /models is kept "
        "before a listing fetches it again (failures are retried after a tenth of it).",
    ).tag(config=True)

    list_wait = Float(
        2.0, help="Longest a model listing waits for upstreams' model lists being fetched; "
        "a slower upstream's models show in a later listing.",
    ).tag(config=True)

    connect_timeout = Float(
        10.0, help="Seconds to connect to an upstream before the request fails with 502.",
    ).tag(config=True)

    request_timeout = Float(
        600.0, help="Seconds an upstream may take to send its response headers (a "
        "non-streaming answer comes whole) or, over https, between two reads.",
    ).tag(config=True)

    ca_file = Unicode(
        "", help="PEM file of certificate authorities to trust for https upstreams instead "
        "of the system's (for a private CA).",
    ).tag(config=True)

    upstreams = Dict(
        help="""Upstreams declared by the deployment rather than over bodhi/app/upstreams:
        {name: {"base_url": "http://fleet.internal:8080/v1", "api_key_env": "FLEET_KEY",
        "models": [names] or absent (asked from its GET /models), "prefix": "fleet/" or
        absent ('<name>/')}}. The key is read from the named environment variable when the
        storage opens and is held in memory only; a literal key in config is refused.
        Listed with source "config"; the API cannot change or delete them. A stored
        upstream of the same name is hidden while one is configured.""",
    ).tag(config=True)

    @default("upstreams")
    def _default_upstreams(self):
        return {}

    def __init__(self, database: Database, **kwargs):
        super().__init__(**kwargs)
        self.database = database
        self._live: dict[str, _Live] = {}
        #: upstreams set by config, not stored (the hub's shared service: add_fixed)
        self._fixed: dict[str, _Live] = {}
        self._index: dict[str, RemoteModel] = {}
        self._fernet = None
        self._tls = None

    # -- the Fernet key --------------------------------------------------------------------
    def fernet(self):
        if self._fernet is None:
            from cryptography.fernet import Fernet

            key = self.secret_key.encode() if self.secret_key else self._key_from_file()
            try:
                self._fernet = Fernet(key)
            except ValueError:
                where = "UpstreamRegistry.secret_key" if self.secret_key else \
                    self.secret_key_file
                raise ValueError(f"{where} does not hold a valid Fernet key") from None
        return self._fernet

    def _key_from_file(self) -> bytes:
        from cryptography.fernet import Fernet

        path = Path(self.secret_key_file)
        try:
            mode = path.stat().st_mode
            if mode & 0o077:
                self.log.warning("bodhi: %s was readable by others; made it 0600", path)
                path.chmod(0o600)
            return path.read_bytes().strip()
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another server made it meanwhile
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        self.log.info("bodhi: created the key file for upstream API keys: %s", path)
        return key

    def encrypt(self, api_key: str) -> str:
        return self.fernet().encrypt(api_key.encode()).decode()

    def decrypt(self, token: str) -> str:
        return self.fernet().decrypt(token.encode()).decode()

    def tls_verify(self):
        if self._tls is None:
            import ssl

            self._tls = (ssl.create_default_context(cafile=self.ca_file) if self.ca_file
                         else True)
        return self._tls

    # -- storage ---------------------------------------------------------------------------
    def load(self) -> None:
        """Read every upstream from the database (at start-up, in the storage thread)."""
        from sqlalchemy import select

        from ..store.tables import upstreams
        with self.database.read() as conn:
            rows = conn.execute(select(upstreams)).all()
        for live in self._live.values():
            live.close()
        self._live = {}
        for row in rows:
            self._live[row.name] = self._make_live(row)
        self.load_config()

    def load_config(self) -> None:
        """Install the configured upstreams (again), their keys from the environment; a
        bad entry is logged and left out, the others still load."""
        for name in [n for n, live in self._fixed.items() if live.view.source == "config"]:
            self._fixed.pop(name).close()
        for name, spec in sorted(self.upstreams.items()):
            try:
                fields, env = parse_config_upstream(name, spec)
            except ValueError as e:
                self.log.error("bodhi: ignoring configured upstream: %s", e)
                continue
            if name in self._fixed:
                self.log.error("bodhi: ignoring configured upstream %r: the name is taken",
                               name)
                continue
            key = os.environ.get(env) if env else None
            if env and not key:
                self.log.error("bodhi: upstream %s: the environment variable %s (its "
                               "api_key_env) is not set; requests go without a key", name, env)
            if name in self._live:
                self.log.warning("bodhi: configured upstream %s hides the stored one of the "
                                 "same name", name)
            self.add_fixed(name, fields["base_url"], key or None, fields["prefix"],
                           models=fields["models"], source="config")
            self.log.info("bodhi: upstream %s from config: %s (key %s)", name,
                          fields["base_url"], f"from ${env}" if key else "none")
        self._reindex()

    def _make_live(self, row) -> _Live:
        key = None
        if row.api_key_encrypted:
            try:
                key = self.decrypt(row.api_key_encrypted)
            except Exception as e:  # a changed secret key: the upstream works without it
                self.log.error("bodhi: cannot decrypt the API key of upstream %s (%s); was "
                               "the secret key changed? Set the key again with PUT",
                               row.name, type(e).__name__)
        view = Upstream(row.name, row.base_url,
                        tuple(row.models) if row.models is not None else None, row.prefix,
                        row.api_key_encrypted is not None, row.created_at, row.updated_at)
        return _Live(view, key, self)

    def add_fixed(self, name: str, base_url: str, api_key: str | None,
                  prefix: str | None = "", models=None, source: str = "service") -> Upstream:
        """An upstream from config rather than the database: not changed or deleted through
        the API (its name is taken); listed there only when ``source`` is "config" (the hub
        service's is not). Without ``models`` they are asked from its ``GET /models``."""
        view = Upstream(name, check_base_url(base_url),
                        tuple(models) if models is not None else None, prefix,
                        api_key is not None, source=source)
        old = self._fixed.pop(name, None)
        if old is not None:
            old.close()
        self._fixed[name] = _Live(view, api_key, self)
        self._reindex()
        return view

    def _find(self, name: str) -> _Live | None:
        return self._fixed.get(name) or self._live.get(name)  # as _every: fixed ones win

    def _every(self) -> dict[str, _Live]:
        return {**self._live, **self._fixed}

    def _listed(self) -> dict[str, _Live]:
        return {n: live for n, live in self._every().items()
                if live.view.source in ("api", "config")}

    def list(self) -> list[Upstream]:
        listed = self._listed()
        return [listed[n].view for n in sorted(listed)]

    def get(self, name: str) -> Upstream:
        live = self._listed().get(name)
        if live is None:
            raise not_found(name)
        return live.view

    def _check_changeable(self, name: str) -> None:
        fixed = self._fixed.get(name)
        if fixed is not None and fixed.view.source == "config":
            raise BodhiAPIError(409, f"The upstream '{name}' comes from the server's "
                                "configuration (UpstreamRegistry.upstreams) and cannot be "
                                "changed here", code="upstream_read_only", param="name")

    def create(self, spec: dict) -> Upstream:
        """``spec`` as :func:`parse_upstream` returns it; 409 when the name is taken."""
        from ..store.tables import upstreams as t

        name = spec["name"]
        if name in self._live or name in self._fixed:
            raise BodhiAPIError(409, f"An upstream named '{name}' exists already",
                                code="upstream_exists", param="name")
        key = spec.get("api_key")
        with self.database.begin() as conn:
            row = conn.execute(t.insert().values(
                name=name, base_url=spec["base_url"], models=spec["models"],
                prefix=spec["prefix"], api_key_encrypted=self.encrypt(key) if key else None)
                .returning(t)).one()
        return self._install(row)

    def replace(self, name: str, spec: dict) -> Upstream:
        from sqlalchemy import select

        from ..store.tables import upstreams as t
        self._check_changeable(name)
        with self.database.begin() as conn:
            row = conn.execute(select(t).where(t.c.name == name)).first()
            if row is None:
                raise not_found(name)
            values = {"base_url": spec["base_url"], "models": spec["models"],
                      "prefix": spec["prefix"]}
            if "api_key" in spec:
                key = spec["api_key"]
                values["api_key_encrypted"] = self.encrypt(key) if key else None
            if any(getattr(row, k) != v for k, v in values.items()):  # else updated_at stays
                row = conn.execute(t.update().where(t.c.id == row.id).values(values)
                                   .returning(t)).one()
        return self._install(row)

    def delete(self, name: str) -> None:
        from sqlalchemy import delete

        from ..store.tables import upstreams as t
        self._check_changeable(name)
        if name not in self._live:
            raise not_found(name)
        with self.database.begin() as conn:
            conn.execute(delete(t).where(t.c.name == name))
        self._live.pop(name).close()
        self._reindex()

    def _install(self, row) -> Upstream:
        old = self._live.get(row.name)
        live = self._live[row.name] = self._make_live(row)
        if old is not None:
            if old.view.base_url == live.view.base_url:
                live.fetched = old.fetched  # still its models; refreshed at the next listing
            old.close()
        self._reindex()
        return live.view

    def close(self) -> None:
        for live in self._every().values():
            live.close()

    # -- models ----------------------------------------------------------------------------
    def _reindex(self) -> None:
        index: dict[str, RemoteModel] = {}
        every = self._every()
        for name in sorted(every):
            live = every[name]
            models = live.view.models if live.view.models is not None else live.fetched
            prefix = live.view.effective_prefix
            for m in models or ():
                index.setdefault(prefix + m, RemoteModel(prefix + m, name, m))
        self._index = index

    def models(self) -> list[RemoteModel]:
        return list(self._index.values())

    def lookup(self, model_id: str) -> RemoteModel | None:
        """The remote model by that name, from the lists in memory: a dict lookup."""
        return self._index.get(model_id)

    def forwarder(self, model: RemoteModel) -> RemoteForwarder:
        live = self._find(model.upstream)
        if live is None:  # deleted a moment ago
            raise BodhiAPIError(404, f"The model '{model.id}' does not exist",
                                code="model_not_found", param="model")
        return RemoteForwarder(live, model)

    def _stale(self, live: _Live) -> bool:
        if live.view.models is not None:
            return False
        if live.fetched_at is None:
            return True
        age = time.monotonic() - live.fetched_at
        interval = self.models_refresh_interval
        return age >= (interval / 10 if live.fetch_error else interval)

    async def refresh_stale(self, names=None, wait: float | None = None) -> None:
        """Fetch the model lists that are stale (all, or of ``names``); wait for them at
        most ``wait`` seconds (default ``list_wait``); the rest finish in the background."""
        pending = []
        for name in (names if names is not None else list(self._every())):
            live = self._find(name)
            if live is None:
                continue
            if live.fetching is None and self._stale(live):
                live.fetching = asyncio.ensure_future(self._refresh(live))
            if live.fetching is not None:
                pending.append(live.fetching)
        if pending:
            await asyncio.wait(pending, timeout=self.list_wait if wait is None else wait)

    async def refresh_for(self, model_id: str) -> RemoteModel | None:
        """``lookup``, after fetching stale lists of upstreams whose prefix the name has
        (throttled: an unknown name does not make every request ask the upstream)."""
        names = [n for n, live in self._every().items()
                 if model_id.startswith(live.view.effective_prefix)]
        if names:
            await self.refresh_stale(names, wait=self.connect_timeout)
        return self.lookup(model_id)

    async def _refresh(self, live: _Live) -> None:
        try:
            models = await self.fetch_models(live.view.name, live)
            live.fetched, live.fetch_error = tuple(models), None
        except BodhiAPIError as e:
            live.fetch_error = e.message
            self.log.warning("bodhi: cannot list the models of upstream %s: %s",
                             live.view.name, e.message)
        except Exception as e:  # never let a background fetch fail loudly
            live.fetch_error = type(e).__name__
            self.log.warning("bodhi: cannot list the models of upstream %s: %s",
                             live.view.name, type(e).__name__)
        finally:
            live.fetched_at = time.monotonic()
            live.fetching = None
            if self._find(live.view.name) is live:
                self._reindex()

    async def fetch_models(self, name: str, live: _Live | None = None) -> list[str]:
        """The model ids the upstream's ``GET /models`` reports (502 when it cannot)."""
        live = live or self._find(name)
        if live is None:
            raise not_found(name)
        resp = await live.request("GET", "/v1/models", b"", f"{name}/")
        try:
            body = await resp.read()
        except (EngineFailed, UpstreamError) as e:
            raise live.unreachable(e) from None
        finally:
            resp.close()
        if resp.status != 200:
            message = body.decode("utf-8", "replace")[:300]
            try:
                err = json.loads(body).get("error")
                message = err.get("message", message) if isinstance(err, dict) else message
            except (ValueError, AttributeError):
                pass
            raise BodhiAPIError(502, f"The upstream '{name}' answered GET /models with "
                                f"{resp.status}: {message}", code="upstream_error")
        try:
            data = json.loads(body)["data"]
            ids = [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
        except (ValueError, KeyError, TypeError):
            raise BodhiAPIError(502, f"The upstream '{name}' answered GET /models with "
                                "something that is not an OpenAI model list",
                                code="upstream_error") from None
        if live.view.models is None and self._find(name) is live:
            live.fetched, live.fetched_at, live.fetch_error = tuple(ids), time.monotonic(), None
            self._reindex()
        return ids
