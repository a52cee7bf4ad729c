"""Turning a requested model name into a file, request defaults and engine options.

Names resolve first against aliases (kept in the database; those from traitlets config are
mirrored there at start-up) and then against the files that discovery found.

Resolution never touches the disk: it uses the last scan. A listing or an unknown name asks
for a rescan, which runs in a thread, at most once per ``rescan_interval``, shared by every
caller waiting meanwhile, so clients sending mistyped names cannot make each request scan
the Hugging Face cache.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from traitlets import Bool, Dict, Float, Int, default
from traitlets.config import LoggingConfigurable

if TYPE_CHECKING:  # SQLAlchemy loads when a query first runs, not with the server
    from ..store.database import Database
from .discovery import ModelDiscovery, ModelFile
from .metadata import ModelMetadata

SERVER_OPTION_KEYS = {
    "ctx_size": int,
    "parallel": int,
    "gpu_layers": int,
    "pooling": str,
    "chat_template": str,
    "chat_template_file": str,
    "mmproj": str,
    "extra_args": list,
}


class ModelNotFound(LookupError):
    """No model by that name; ``param`` is the request field that named it."""

    def __init__(self, message: str, param: str = "model"):
        super().__init__(message)
        self.param = param


class InvalidAlias(ValueError):
    """``param`` names the offending field or llama-server flag when known."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class ServerOptions:
    """Everything that makes one llama-server process different from another."""

    ctx_size: int
    parallel: int
    gpu_layers: int | None = None
    pooling: str = "mean"
    chat_template: str | None = None
    chat_template_file: str | None = None
    #: a multimodal projector (GGUF); without one the model takes text only
    mmproj: str | None = None
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResolvedModel:
    id: str
    path: str
    kind: str  # "alias" or the discovery source
    server: ServerOptions
    request_defaults: dict = field(default_factory=dict, compare=False, hash=False)
    #: the file's header facts, read during the scan; None when unknown
    metadata: ModelMetadata | None = field(default=None, compare=False, hash=False,
                                           repr=False)
    #: a model of a remote upstream (models/upstreams.py RemoteModel); None for local ones
    remote: object | None = field(default=None, compare=False)
    #: a router alias: the model names to try in order
    targets: tuple[str, ...] | None = None


#: what a router or remote model has instead of engine options
NO_SERVER = ServerOptions(ctx_size=0, parallel=0)


def validate_alias(name: str, spec: dict, roots: list[str] | None = None) -> None:
    """Raise InvalidAlias with a message naming the offending field. With ``roots`` (the
    model directories) also the allow list of llama-server flags, file-valued options and
    typed request defaults (models/aliases.py ``check_alias``)."""
    if not name or any(c.isspace() for c in name):
        raise InvalidAlias(f"alias name {name!r} must be non-empty without spaces")
    if isinstance(spec, dict) and spec.get("targets") is not None:
        validate_router(name, spec)
        return
    if not isinstance(spec, dict) or not isinstance(spec.get("model"), str) or not spec["model"]:
        raise InvalidAlias(f"alias {name!r} needs a 'model' (a model id or a .gguf path)")
    request = spec.get("request", {})
    if not isinstance(request, dict):
        raise InvalidAlias(f"alias {name!r}: 'request' must be an object")
    server = spec.get("server", {})
    if not isinstance(server, dict):
        raise InvalidAlias(f"alias {name!r}: 'server' must be an object")
    for key, value in server.items():
        kind = SERVER_OPTION_KEYS.get(key)
        if kind is None:
            raise InvalidAlias(f"alias {name!r}: unknown server option {key!r}; "
                               f"known: {', '.join(sorted(SERVER_OPTION_KEYS))}")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InvalidAlias(f"alias {name!r}: server option {key!r} must be {kind.__name__}")
    unknown = set(spec) - {"model", "request", "server", "targets"}
    if unknown:
        raise InvalidAlias(f"alias {name!r}: unknown keys {sorted(unknown)}")
    if roots is not None:
        from .aliases import check_alias
        check_alias(name, spec, roots)


def validate_router(name: str, spec: dict) -> None:
    """A router alias: ``targets`` (model names, local or remote, tried in order) instead of
    ``model``; it has no options of its own (each target keeps its own)."""
    targets = spec.get("targets")
    if spec.get("model") is not None:
        raise InvalidAlias(f"alias {name!r}: give either 'model' or 'targets', not both")
    if (not isinstance(targets, list) or not 1 <= len(targets) <= 16
            or not all(isinstance(t, str) and t and not any(c.isspace() for c in t)
                       for t in targets)):
        raise InvalidAlias(f"alias {name!r}: 'targets' must be a list of 1-16 model names")
    if name in targets:
        raise InvalidAlias(f"alias {name!r}: a router cannot be its own target")
    unknown = set(spec) - {"model", "targets", "request", "server"}
    if unknown or spec.get("request") or spec.get("server"):
        raise InvalidAlias(f"alias {name!r}: a router takes only 'targets' (its targets keep "
                           "their own request defaults and server options)")


class ModelRegistry(LoggingConfigurable):
    """Resolves model names; the one place that knows about aliases and discovered files."""

    aliases = Dict(
        help="""Model aliases: {name: {"model": <model id or .gguf path>,
        "request": {request defaults such as temperature, max_tokens, stop, system_prompt},
        "server": {ctx_size, parallel, gpu_layers, pooling, chat_template,
        chat_template_file, mmproj (a vision/audio projector GGUF), extra_args}}}. Request defaults apply only where a request
        leaves a field out. A router alias is {name: {"targets": [model names, local or
        remote]}}: each request tries them in order, moving on after a connection error, a
        failed engine start or a 5xx. Mirrored into the database at start-up.""",
    ).tag(config=True)

    default_ctx_size = Int(
        8192, help="Context size (-c) for models without one in their alias; shared by the "
        "parallel slots."
    ).tag(config=True)

    default_parallel = Int(
        4, help="Parallel slots (-np) for models without a value in their alias."
    ).tag(config=True)

    default_gpu_layers = Int(
        None, allow_none=True,
        help="Layers to offload to a GPU (-ngl) unless an alias says otherwise; None leaves "
        "the engine's default.",
    ).tag(config=True)

    rescan_interval = Float(
        5.0, help="Least seconds between two scans for model files. A model listing or an "
        "unknown model name rescans the disk (off the event loop) when the last scan is at "
        "least this old; 0 rescans every time.",
    ).tag(config=True)

    local_models = Bool(
        True, help="Serve local model files (discovery, file aliases, engines started here). "
        "False: this server fronts remote engines only (UpstreamRegistry.upstreams, or "
        "upstreams added over bodhi/app/upstreams; router aliases across them): nothing is "
        "scanned, no llama-server is ever started, bodhi/v1/models lists only the upstreams' "
        "models and routers, and a request for a local model is a 404 saying so.",
    ).tag(config=True)

    def __init__(self, database: Database, discovery: ModelDiscovery | None = None, **kwargs):
        super().__init__(**kwargs)
        self.database = database
        self.discovery = discovery or ModelDiscovery(parent=self)
        self._files: dict[str, ModelFile] = {}
        self._path_files: dict[str, ModelFile] = {}  # .gguf paths aliases name, read too
        self._scanned_at: float | None = None  # monotonic time the last scan ended
        self._scan: asyncio.Future | None = None
        self.scans = 0
        self._aliases: dict[str, dict] = {}
        #: remote models (models/upstreams.py UpstreamRegistry), consulted after local ones
        self.remote = None
        #: False when no local file is served: local_models is off, or every model is the
        #: hub's shared service's (BodhiApp.service_url). Local files and file aliases are
        #: then neither scanned, listed nor served; routers (over remote models) still are
        self.local = self.local_models

    @default("aliases")
    def _default_aliases(self):
        return {}

    # -- aliases ---------------------------------------------------------------------------
    def sync_config_aliases(self) -> None:
        """Mirror config aliases into the database; drop config aliases no longer configured.
        Aliases created through the API (source 'api') are left alone."""
        valid = {}
        for name, spec in self.aliases.items():
            try:  # config is the operator's, trusted as LlamaServerLauncher.extra_args is:
                validate_alias(name, spec)  # the flag allow list is for API aliases
            except InvalidAlias as e:
                self.log.error("bodhi: ignoring configured alias: %s", e)
                continue
            valid[name] = spec
        from sqlalchemy import select

        from ..store.tables import model_aliases as t
        fields = ("source", "model", "targets", "request_defaults", "server_options")
        with self.database.begin() as conn:
            existing = {a.name: a for a in conn.execute(
                select(t.c.name, *(t.c[f] for f in fields)))}
            gone = [name for name, row in existing.items()
                    if row.source == "config" and name not in valid]
            if gone:
                conn.execute(t.delete().where(t.c.name.in_(gone)))
            for name, spec in valid.items():
                values = {"source": "config", "model": spec.get("model"),
                          "targets": list(spec["targets"]) if spec.get("targets") else None,
                          "request_defaults": dict(spec.get("request", {})),
                          "server_options": dict(spec.get("server", {}))}
                row = existing.get(name)
                if row is None:
                    conn.execute(t.insert().values(name=name, **values))
                    continue
                if row.source != "config":
                    self.log.warning("bodhi: configured alias %s overrides one made at run "
                                     "time", name)
                if any(getattr(row, f) != values[f] for f in fields):  # else updated_at stays
                    conn.execute(t.update().where(t.c.name == name).values(values))
        self.load_aliases()

    def model_roots(self) -> list[str]:
        """Directories file-valued alias options may point into: the HF cache, the model
        directories, converted models and the folders of the models found."""
        d = self.discovery
        roots = [str(Path(d.hf_home) / "hub"), *d.model_dirs, d.converted_dir]
        roots += sorted({str(Path(f.path).parent) for f in self.files().values()})
        return roots

    def load_aliases(self) -> None:
        from sqlalchemy import select

        from ..store.tables import model_aliases as t
        with self.database.read() as conn:
            self._aliases = {
                a.name: {"model": a.model, "request": a.request_defaults or {},
                         "server": a.server_options or {}, "targets": a.targets}
                for a in conn.execute(select(t))
            }

    # -- files -----------------------------------------------------------------------------
    def files(self) -> dict[str, ModelFile]:
        """The files of the last scan (the first call scans: at start-up); none at all
        when local files are not served."""
        if not self.local:
            return {}
        if self._scanned_at is None:
            self._store_scan(self._scan_files())
        return self._files

    def _scan_files(self) -> tuple[dict[str, ModelFile], dict[str, ModelFile]]:
        """Discovery's files, and the .gguf paths aliases name, each with its metadata."""
        files = self.discovery.scan()
        paths = {}
        for alias in list(self._aliases.values()):
            ref = alias["model"]  # None for a router
            if ref and ref not in files and ref.endswith(".gguf") and Path(ref).is_file():
                p = Path(ref)
                paths[ref] = self.discovery.with_metadata(
                    ModelFile(p.stem, str(p), "path", p.stat().st_size))
        return files, paths

    def _store_scan(self, scanned: tuple[dict[str, ModelFile], dict[str, ModelFile]]) -> None:
        self._files, self._path_files = scanned
        self._scanned_at = time.monotonic()
        self.scans += 1

    async def rescan(self, force: bool = False) -> bool:
        """Scan again in a thread unless the last scan is younger than ``rescan_interval``;
        callers arriving during a scan share it. True when a scan ran for this call (the
        files may have changed), False when throttled. ``force`` (a file was just added)
        skips the throttle and never shares a scan that began before the call."""
        if not self.local:
            return False
        if force and self._scan is not None:
            await asyncio.shield(self._scan)  # it may have missed the new file
        if self._scan is None:
            last = self._scanned_at
            if not force and last is not None and time.monotonic() - last < self.rescan_interval:
                return False
            self._scan = asyncio.ensure_future(self._scan_off_loop())
        await asyncio.shield(self._scan)
        return True

    async def _scan_off_loop(self) -> None:
        try:
            self._store_scan(await asyncio.to_thread(self._scan_files))
        except Exception as e:  # keep the last list; try again after the interval
            self._scanned_at = time.monotonic()
            self.log.error("bodhi: scanning for models failed: %s", e)
        finally:
            self._scan = None

    # -- resolution ------------------------------------------------------------------------
    def list_models(self) -> list[ResolvedModel]:
        """Every alias and file of the last scan (``await rescan()`` first for new files)."""
        files = self.files()
        out = []
        for name in sorted(self._aliases):
            if not self.local and not self._aliases[name].get("targets"):
                continue  # a file alias: not served here
            try:
                out.append(self.resolve(name))
            except ModelNotFound as e:
                self.log.warning("bodhi: alias %s points at a missing model: %s", name, e)
        out.extend(self._from_file(f) for f in files.values() if f.id not in self._aliases)
        if self.remote is not None:
            known = {m.id for m in out}
            out.extend(self._from_remote(m) for m in self.remote.models() if m.id not in known)
        return out

    async def resolve_fresh(self, name: str) -> ResolvedModel:
        """``resolve``, rescanning (throttled) once when the name is unknown, so a model
        downloaded a moment ago is found."""
        try:
            return self.resolve(name)
        except ModelNotFound:
            remote = self.remote
            if remote is not None and await remote.refresh_for(name) is not None:
                return self.resolve(name)
            if not await self.rescan():
                raise
        return self.resolve(name)

    def resolve(self, name: str) -> ResolvedModel:
        alias = self._aliases.get(name)
        if alias is not None and alias.get("targets"):
            return ResolvedModel(name, "", "router", NO_SERVER,
                                 targets=tuple(alias["targets"]))
        if not self.local:
            remote = self.remote.lookup(name) if self.remote is not None else None
            if remote is None:
                raise ModelNotFound(f"The model '{name}' does not exist: this server runs "
                                    "no local models (ModelRegistry.local_models is off or "
                                    "a hub service serves them); GET bodhi/v1/models lists "
                                    "the remote ones it serves")
            return self._from_remote(remote)
        if alias is not None:
            target = self._find_file(alias["model"])
            if target is None:
                raise ModelNotFound(f"alias '{name}' points at '{alias['model']}', which is "
                                    "not an installed model")
            base = self._from_file(target)
            opts = dict(alias["server"])
            if "extra_args" in opts:
                opts["extra_args"] = tuple(str(a) for a in opts["extra_args"])
            server = ServerOptions(**{**base.server.__dict__, **opts})
            defaults = {**base.request_defaults, **alias["request"]}
            return ResolvedModel(name, target.path, "alias", server, defaults,
                                 target.metadata)
        target = self._find_file(name, allow_path=False)
        if target is None:
            remote = self.remote.lookup(name) if self.remote is not None else None
            if remote is not None:
                return self._from_remote(remote)
            raise ModelNotFound(f"The model '{name}' does not exist")
        resolved = self._from_file(target)
        return ResolvedModel(name, resolved.path, resolved.kind, resolved.server,
                             resolved.request_defaults, resolved.metadata)

    def _find_file(self, ref: str, allow_path: bool = True) -> ModelFile | None:
        """Ids come from the last scan: no scan on the request path."""
        found = self.files().get(ref)
        if found is None and allow_path and ref.endswith(".gguf") and Path(ref).is_file():
            found = self._path_files.get(ref)  # with metadata once a scan has read it
            if found is None:
                p = Path(ref)
                found = ModelFile(p.stem, str(p), "path", p.stat().st_size)
        return found

    async def resolve_target(self, router: ResolvedModel, name: str) -> ResolvedModel:
        """One target of a router alias, a known model that is not itself a router (a
        remote one whose upstream's list is stale is looked up after refreshing it)."""
        try:
            model = self.resolve(name)
        except ModelNotFound as e:
            remote = self.remote
            if remote is None or await remote.refresh_for(name) is None:
                raise ModelNotFound(f"router '{router.id}': target '{name}' is unknown "
                                    f"({e})") from None
            model = self.resolve(name)
        if model.targets is not None:
            raise InvalidAlias(f"router '{router.id}': target '{name}' is a router itself; "
                               "routers do not nest")
        return model

    @staticmethod
    def _from_remote(remote) -> ResolvedModel:
        return ResolvedModel(remote.id, "", "remote", NO_SERVER, remote=remote)

    def _from_file(self, f: ModelFile) -> ResolvedModel:
        server = ServerOptions(**{"ctx_size": self.default_ctx_size,
                                  "parallel": self.default_parallel,
                                  "gpu_layers": self.default_gpu_layers, **f.server_options})
        return ResolvedModel(f.id, f.path, f.source, server, dict(f.request_defaults),
                             f.metadata)


def apply_request_defaults(endpoint: str, body: dict, defaults: dict) -> dict:
    """Fill what the request left out; a ``system_prompt`` default becomes a leading system
    message for chat when the conversation has none."""
    if endpoint == "embeddings":
        return body
    out = dict(body)
    for key, value in defaults.items():
        if key == "system_prompt":
            continue
        out.setdefault(key, value)
    prompt = defaults.get("system_prompt")
    if endpoint == "chat" and prompt:
        messages = out.get("messages") or []
        if not any(isinstance(m, dict) and m.get("role") in ("system", "developer")
                   for m in messages):
            out["messages"] = [{"role": "system", "content": prompt}, *messages]
    return out
