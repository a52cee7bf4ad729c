"""The Jupyter server extension: wires storage, model registry and engine supervisor to
the HTTP handlers, and stops every engine when the server stops."""

from __future__ import annotations

import time

from jupyter_server.extension.application import ExtensionApp

from . import __version__
from .engine.launcher import LlamaServerLauncher
from .engine.supervisor import EngineSupervisor
from .handlers import openai
from .handlers.base import NotFoundHandler
from .inference import InferenceGateway
from .models.discovery import ModelDiscovery
from .models.registry import ModelRegistry
from .store.database import Database


class BodhiApp(ExtensionApp):
    """bodhi-jupyter: an OpenAI-compatible API over llama.cpp inside Jupyter."""

    name = "bodhi_jupyter"
    version = __version__
    description = __doc__
    load_other_extensions = True
    classes = [Database, ModelDiscovery, ModelRegistry, LlamaServerLauncher, EngineSupervisor]

    def initialize_settings(self):
        self.started_at = time.time()
        self.database = Database(parent=self, log=self.log)
        self.database.upgrade()
        self.registry = ModelRegistry(self.database, ModelDiscovery(parent=self, log=self.log),
                                      parent=self, log=self.log)
        self.registry.sync_config_aliases()
        self.launcher = LlamaServerLauncher(parent=self, log=self.log)
        self.supervisor = EngineSupervisor(self.launcher, parent=self, log=self.log)
        self.gateway = InferenceGateway(self.registry)
        self.settings["bodhi"] = self
        self.log.info("bodhi: %d model(s) available; engine command %s",
                      len(self.registry.list_models()), " ".join(self.launcher.binary()))

    def initialize_handlers(self):
        self.handlers.extend(openai.default_handlers)
        self.handlers.append((r"bodhi/(.*)", NotFoundHandler))

    async def stop_extension(self):
        self.log.info("bodhi: stopping %d engine(s)", len(self.supervisor.engines))
        await self.supervisor.shutdown()
        self.database.dispose()


main = launch_new_instance = BodhiApp.launch_instance
