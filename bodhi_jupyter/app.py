"""The Jupyter server extension: wires storage, model registry and engine supervisor to
the HTTP handlers, and stops every engine when the server stops.

Start-up stays cheap: only configurables and handler classes are set up while the server
starts. The database (SQLAlchemy, and Alembic when a migration is pending), the alias
mirror, stored run-time settings and the first model scan happen in a background thread
once the server is up; a request that needs them awaits ``ready()``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import gc
import threading
import time

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Int, List, Unicode
from traitlets.config import Config

from . import __version__
from .audit import AuditLog
from .auth.identity import server_owner
from .auth.kernel_tokens import KernelCredentials, local_api_url
from .auth.limits import RateLimiter
from .auth.quotas import QuotaPolicy
from .auth.roles import RolePolicy
from .auth.tokens import TokenStore
from .auth.verified_tokens import VerifiedTokens
from .background import BackgroundTasks
from .context_guard import ContextGuard
from .conversations import ConversationStore
from .engine.launcher import LlamaServerLauncher
from .engine.supervisor import EngineSupervisor
from .errors import BodhiAPIError
from .handlers import app as app_api
from .handlers import audit as audit_api
from .handlers import conversations as conversations_api
from .handlers import meta, openai, tokens
from .handlers import models as models_api
from .handlers import ollama as ollama_api
from .handlers import pulls as pulls_api
from .handlers import upstreams as upstreams_api
from .handlers import aliases as aliases_api
from .handlers.base import NotFoundHandler
from .inference import InferenceGateway
from .metrics import BodhiMetrics
from .models.discovery import ModelDiscovery
from .models.pulls import PullManager
from .models.registry import ModelRegistry
from .models.upstreams import UpstreamRegistry
from .models.aliases import AliasStore
from .service_forwarding import ServiceForwarding
from .settings import RuntimeSettings
from .store.database import Database
from .usage import UsageRecorder


#: seconds after the server starts listening before storage opens in the background
OPEN_STORAGE_AFTER_S = 1.0


class BodhiApp(ExtensionApp):
    """bodhi-jupyter: an OpenAI-compatible API over llama.cpp inside Jupyter."""

    name = "bodhi_jupyter"
    version = __version__
    description = __doc__.split("\n\n")[0]
    load_other_extensions = True
    classes = [Database, ModelDiscovery, ModelRegistry, LlamaServerLauncher, EngineSupervisor,
               RolePolicy, RateLimiter, QuotaPolicy, PullManager, UpstreamRegistry]

    preload = List(
        Unicode(),
        help="Models to start when the server starts, so the first chat does not wait for "
        "a load. They unload after EngineSupervisor.keep_alive idle seconds like any other.",
    ).tag(config=True)

    max_body_size = Int(
        16 * 1024 * 1024,
        help="Largest request body, in bytes, the inference endpoints accept; larger ones get "
        "413 before they are read into memory. 16 MiB holds a 10 MiB image in base64 with "
        "its prompt; text that long cannot fit any local model's context anyway.",
    ).tag(config=True)

    kernel_credentials = Bool(
        True,
        help="Start every kernel with BODHI_BASE_URL (this server's own local address) and "
        "BODHI_API_KEY (a bodhi token for inference only, named after the notebook and "
        "revoked when the kernel shuts down) in its environment, so that "
        "bodhi_jupyter.client() needs no configuration. False: kernels get neither.",
    ).tag(config=True)

    service_url = Unicode(
        "",
        help="URL of the hub's shared bodhi service, e.g. "
        "'http://hub.example.org/services/bodhi/'. Set: this server starts no engines; "
        "bodhi/v1 inference and model lists go to the service, as the server's owner (its "
        "$JUPYTERHUB_API_TOKEN, which needs the scope access:services!service=bodhi: see "
        "c.Spawner.server_token_scopes). Empty: local engines.",
    ).tag(config=True)

    freeze_gc = Bool(
        True,
        help="Move everything the server has allocated by the time this extension links "
        "(imports, traitlets, handlers: long-lived) out of the garbage collector's reach "
        "(gc.freeze). Without it, the full collection that the extension's own allocations "
        "bring on during start-up walks all of it once more, and so does each later one, "
        "in the middle of streams. Objects frozen are never collected.",
    ).tag(config=True)

    def _link_jupyter_server_extension(self, serverapp):
        super()._link_jupyter_server_extension(serverapp)
        if self.freeze_gc:
            gc.freeze()

    def initialize_settings(self):
        self.started_at = time.time()
        self.database = Database(parent=self, log=self.log)
        self.registry = ModelRegistry(self.database, ModelDiscovery(parent=self, log=self.log),
                                      parent=self, log=self.log)
        self.upstreams = UpstreamRegistry(self.database, parent=self, log=self.log)
        self.registry.remote = self.upstreams  # remote models resolve after local ones
        self.launcher = LlamaServerLauncher(parent=self, log=self.log)
        self.supervisor = EngineSupervisor(self.launcher, parent=self, log=self.log)
        self.aliases = AliasStore(self.registry, self.supervisor)
        atexit.register(self.supervisor.kill_all)  # if stop_extension never runs
        self.gateway = InferenceGateway(self.registry)
        self.context_guard = ContextGuard(lambda: self.launcher.extra_args, log=self.log)
        self.roles = RolePolicy(parent=self, log=self.log)
        self.forwarding = None
        if self.service_url:  # inference by the hub's shared service, not local engines
            self.forwarding = ServiceForwarding(
                self.service_url, owner=self.roles.owner or server_owner(), log=self.log)
            self.forwarding.install(self.registry, self.upstreams)
        self.tokens = TokenStore(self.database)
        self.verified_tokens = VerifiedTokens()
        self.limiter = RateLimiter(parent=self, log=self.log)
        self.usage = UsageRecorder(self.database, log=self.log)
        self.audit = AuditLog(self.database, log=self.log)
        self.quotas = QuotaPolicy(self.limiter, self.usage, self.database, parent=self,
                                  log=self.log)
        self.conversations = ConversationStore(self.database)
        self.pulls = PullManager(self.database, self.registry, parent=self, log=self.log)
        self.metrics = BodhiMetrics(self.supervisor)
        self.runtime_settings = self._runtime_settings()
        self.kernel_credentials_manager = KernelCredentials(
            self.tokens, owner=lambda: self.roles.owner or server_owner(), ready=self.database_ready,
            base_url=lambda: local_api_url(self.serverapp),
            root_dir=getattr(self.serverapp, "root_dir", None), log=self.log)
        self._tasks = BackgroundTasks(self.log)
        self._opening: concurrent.futures.Future | None = None
        self._database_open: concurrent.futures.Future | None = None
        self._open_lock = threading.Lock()
        self._ready = False
        self.settings["bodhi"] = self

    def initialize_handlers(self):
        self.handlers.extend(openai.default_handlers)
        self.handlers.extend(ollama_api.default_handlers)
        self.handlers.extend(meta.default_handlers)
        self.handlers.extend(tokens.default_handlers)
        self.handlers.extend(app_api.default_handlers)
        self.handlers.extend(audit_api.default_handlers)
        self.handlers.extend(conversations_api.default_handlers + models_api.default_handlers)
        self.handlers.extend(pulls_api.default_handlers)
        self.handlers.extend(upstreams_api.default_handlers)
        self.handlers.extend(aliases_api.default_handlers)
        self.handlers.append((r"bodhi/(.*)", NotFoundHandler))

    def _runtime_settings(self) -> RuntimeSettings:
        objects = {"BodhiApp": self, "EngineSupervisor": self.supervisor,
                   "LlamaServerLauncher": self.launcher, "ModelRegistry": self.registry,
                   "ModelDiscovery": self.registry.discovery, "Database": self.database,
                   "RolePolicy": self.roles, "RateLimiter": self.limiter,
                   "QuotaPolicy": self.quotas}
        cli = Config()  # the command line: the server's, then what it passed on to us
        for part in (getattr(self.serverapp, "cli_config", None), self.cli_config):
            if part:
                cli.merge(part)
        return RuntimeSettings(self.database, objects, self.config, cli, log=self.log)

    # -- storage, opened off the event loop ------------------------------------------------
    def _open_storage(self) -> None:
        """Runs in a thread: migrate if needed, mirror config aliases, apply stored settings
        (after config: the database wins), mark replies the last run left streaming as cut
        off, and scan for models once."""
        self.database.upgrade()
        self.kernel_credentials_manager.purge_stale()  # kernel tokens a killed run left
        self._database_open.set_result(None)  # kernels need no more than this
        self.registry.sync_config_aliases()
        self.upstreams.load()
        self.runtime_settings.apply_stored()
        self.conversations.cut_off_streaming(server_owner())  # replies the last run left
        self.pulls.mark_interrupted()  # pulls the last run left: failed, resumable
        if self.registry.local:
            self.log.info("bodhi: %d model(s) available; engine command %s",
                          len(self.registry.list_models()), " ".join(self.launcher.binary()))
        else:
            self.log.info("bodhi: remote engines only (no local models or engines); %d "
                          "upstream(s)", len(self.upstreams.list()))

    def open_storage(self) -> concurrent.futures.Future:
        """Start opening the storage (once); the future ends when it is open."""
        with self._open_lock:
            if self._opening is None:
                self._opening = concurrent.futures.Future()
                self._database_open = concurrent.futures.Future()
                threading.Thread(target=self._run_open, name="bodhi-open-storage",
                                 daemon=True).start()
            return self._opening

    def _run_open(self) -> None:
        try:
            self._open_storage()
        except BaseException as e:
            self.log.error("bodhi: could not open the database %s: %s", self.database.url, e)
            if not self._database_open.done():
                self._database_open.set_exception(e)
            self._opening.set_exception(e)
            return
        self._ready = True
        self._opening.set_result(None)

    async def ready(self) -> None:
        """Wait until storage is open; 503 if opening it failed. Free once it is open."""
        if self._ready:
            return
        try:
            await asyncio.wrap_future(self.open_storage())
        except Exception as e:
            raise BodhiAPIError(503, f"The bodhi database could not be opened: {e}",
                                code="storage_unavailable") from None

    async def database_ready(self) -> None:
        """Wait until the database is migrated, not for the rest of ``ready()`` (the first
        model scan, which may convert a packaged model): a kernel's credential needs only
        the tokens table, and a kernel should not wait seconds for its first start."""
        if self._ready:
            return
        self.open_storage()
        await asyncio.wrap_future(self._database_open)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Blocking ``ready()``, for callers outside the event loop."""
        self.open_storage().result(timeout)

    # -- lifecycle -------------------------------------------------------------------------
    async def _start_jupyter_server_extension(self, serverapp):
        # runs once the server listens; a moment later (a request that needs the storage
        # opens it at once), so that the import of SQLAlchemy does not compete for the GIL
        # with the server's first requests
        asyncio.get_running_loop().call_later(OPEN_STORAGE_AFTER_S, self.open_storage)
        if self.kernel_credentials:
            self.kernel_credentials_manager.install(serverapp.kernel_manager)
        for name in self.preload:
            self._tasks.spawn(self._preload(name), f"preload {name}")

    async def _preload(self, name: str) -> None:
        try:
            await self.ready()
            model = self.registry.resolve(name)
            async with self.supervisor.lease(server_owner(), model):
                pass
        except Exception as e:  # a bad preload must not stop the server
            self.log.error("bodhi: could not preload %s: %s", name, e)

    async def stop_extension(self):
        self.log.info("bodhi: stopping %d engine(s)", len(self.supervisor.engines))
        await self._tasks.cancel_all()
        # before the server shuts its kernels down; no token was minted if storage never opened
        await self.kernel_credentials_manager.stop(revoke=self._ready)
        await self.pulls.shutdown()
        await self.supervisor.shutdown()
        self.upstreams.close()
        atexit.unregister(self.supervisor.kill_all)
        if self._opening is not None:  # let a start-up migration finish before closing
            await asyncio.wait([asyncio.wrap_future(self._opening)], timeout=30)
        await asyncio.to_thread(self.usage.close)
        await asyncio.to_thread(self.audit.close)
        self.database.dispose()


main = launch_new_instance = BodhiApp.launch_instance
