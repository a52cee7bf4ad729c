"""The Jupyter server extension: wires storage, model registry and engine supervisor to
the HTTP handlers, and stops every engine when the server stops."""

from __future__ import annotations

import asyncio
import atexit
import time

from jupyter_server.extension.application import ExtensionApp
from traitlets import Int, List, Unicode
from traitlets.config import Config

from . import __version__
from .auth.identity import server_owner
from .auth.limits import RateLimiter
from .auth.roles import RolePolicy
from .auth.tokens import TokenStore
from .context_guard import ContextGuard
from .conversations import ConversationStore
from .engine.launcher import LlamaServerLauncher
from .engine.supervisor import EngineSupervisor
from .handlers import app as app_api
from .handlers import conversations as conversations_api
from .handlers import meta, openai, tokens
from .handlers import models as models_api
from .handlers.base import NotFoundHandler
from .inference import InferenceGateway
from .metrics import BodhiMetrics
from .models.discovery import ModelDiscovery
from .models.registry import ModelRegistry
from .settings import RuntimeSettings
from .store.database import Database
from .usage import UsageRecorder


class BodhiApp(ExtensionApp):
    """bodhi-jupyter: an OpenAI-compatible API over llama.cpp inside Jupyter."""

    name = "bodhi_jupyter"
    version = __version__
    description = __doc__
    load_other_extensions = True
    classes = [Database, ModelDiscovery, ModelRegistry, LlamaServerLauncher, EngineSupervisor,
               RolePolicy, RateLimiter]

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

    def initialize_settings(self):
        self.started_at = time.time()
        self.database = Database(parent=self, log=self.log)
        self.database.upgrade()
        self.registry = ModelRegistry(self.database, ModelDiscovery(parent=self, log=self.log),
                                      parent=self, log=self.log)
        self.registry.sync_config_aliases()
        self.launcher = LlamaServerLauncher(parent=self, log=self.log)
        self.supervisor = EngineSupervisor(self.launcher, parent=self, log=self.log)
        atexit.register(self.supervisor.kill_all)  # if stop_extension never runs
        self.gateway = InferenceGateway(self.registry)
        self.context_guard = ContextGuard(lambda: self.launcher.extra_args, log=self.log)
        self.roles = RolePolicy(parent=self, log=self.log)
        self.tokens = TokenStore(self.database)
        self.limiter = RateLimiter(parent=self, log=self.log)
        self.usage = UsageRecorder(self.database, log=self.log)
        self.conversations = ConversationStore(self.database)
        self.conversations.cut_off_streaming(server_owner())  # replies the last run left
        self.metrics = BodhiMetrics(self.supervisor)
        self.runtime_settings = self._runtime_settings()
        self.runtime_settings.apply_stored()  # after config: the database wins
        self.settings["bodhi"] = self
        self.log.info("bodhi: %d model(s) available; engine command %s",
                      len(self.registry.list_models()), " ".join(self.launcher.binary()))

    def initialize_handlers(self):
        self.handlers.extend(openai.default_handlers)
        self.handlers.extend(meta.default_handlers)
        self.handlers.extend(tokens.default_handlers)
        self.handlers.extend(app_api.default_handlers)
        self.handlers.extend(conversations_api.default_handlers + models_api.default_handlers)
        self.handlers.append((r"bodhi/(.*)", NotFoundHandler))

    def _runtime_settings(self) -> RuntimeSettings:
        objects = {"BodhiApp": self, "EngineSupervisor": self.supervisor,
                   "LlamaServerLauncher": self.launcher, "ModelRegistry": self.registry,
                   "ModelDiscovery": self.registry.discovery, "Database": self.database,
                   "RolePolicy": self.roles, "RateLimiter": self.limiter}
        cli = Config()  # the command line: the server's, then what it passed on to us
        for part in (getattr(self.serverapp, "cli_config", None), self.cli_config):
            if part:
                cli.merge(part)
        return RuntimeSettings(self.database, objects, self.config, cli, log=self.log)

    async def _start_jupyter_server_extension(self, serverapp):
        self._preloading = [asyncio.ensure_future(self._preload(name)) for name in self.preload]

    async def _preload(self, name: str) -> None:
        try:
            model = self.registry.resolve(name)
            async with self.supervisor.lease(server_owner(), model):
                pass
        except Exception as e:  # a bad preload must not stop the server
            self.log.error("bodhi: could not preload %s: %s", name, e)

    async def stop_extension(self):
        self.log.info("bodhi: stopping %d engine(s)", len(self.supervisor.engines))
        await self.supervisor.shutdown()
        atexit.unregister(self.supervisor.kill_all)
        await asyncio.to_thread(self.usage.close)
        self.database.dispose()


main = launch_new_instance = BodhiApp.launch_instance
