"""bodhi as a JupyterHub-managed service (``bodhi-service``): one process pool serving every
hub user at ``/services/<name>/``.

A Jupyter server with nothing but the bodhi extension: no contents, files, kernels,
terminals or sessions, so a hub user with access to the service can use models and nothing
else of the machine. Authentication is JupyterHub's own single-user identity provider and
authorizer (``jupyterhub.singleuser.extension``), which read the ``JUPYTERHUB_*`` variables
the hub gives a managed service as it does a user's server: hub tokens for code
(``Authorization: token|Bearer <hub token>``), hub OAuth for browsers, and only users holding
``access:services!service=<name>`` get in. Each request's principal is the hub user: hub
admins (``RolePolicy.hub_admin_role``), members of ``RolePolicy.group_roles`` groups and
holders of the hub scope ``custom:bodhi:admin`` are admins; nobody owns the service.

Defaults that differ from a user's server (config still wins): engines shared by all users
(``EngineSupervisor.share_engines``, where that setting exists), no kernel credentials. The
database is ``Database.url`` (PostgreSQL in a hub deployment).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from jupyter_server.serverapp import ServerApp
from traitlets import default

from .app import BodhiApp
from .engine.supervisor import EngineSupervisor


class ServiceServerApp(ServerApp):
    """The Jupyter server of the service: bodhi's handlers and the hub's login only."""

    name = "bodhi-service"
    description = "bodhi-jupyter as a JupyterHub service"
    # no contents, files, kernels, sessions, nbconvert, terminals...: "auth" has no handlers
    default_services = ("auth",)

    @default("identity_provider_class")
    def _default_identity_provider_class(self):
        from jupyterhub.singleuser.extension import JupyterHubIdentityProvider

        return JupyterHubIdentityProvider

    @default("authorizer_class")
    def _default_authorizer_class(self):
        from jupyterhub.singleuser.extension import JupyterHubAuthorizer

        return JupyterHubAuthorizer

    @default("terminals_enabled")
    def _default_terminals_enabled(self):
        return False

    # where the hub says the service listens (JUPYTERHUB_SERVICE_URL) and its prefix
    @default("ip")
    def _default_ip(self):
        return urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", "")).hostname or "127.0.0.1"

    @default("port")
    def _default_port(self):
        url = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))
        return url.port or (443 if url.scheme == "https" else 80 if url.scheme else 8888)

    @default("base_url")
    def _default_base_url(self):
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/"

    @default("port_retries")
    def _default_port_retries(self):
        return 0  # the hub routes to exactly this port

    @default("allow_remote_access")
    def _default_allow_remote_access(self):
        return True  # requests come through the hub's proxy

    @default("trust_xheaders")
    def _default_trust_xheaders(self):
        return True

    @default("open_browser")
    def _default_open_browser(self):
        return False

    @default("default_url")
    def _default_default_url(self):
        return "/bodhi/login"  # a browser opening the service signs in through the hub

    @default("allow_unauthenticated_access")
    def _default_allow_unauthenticated_access(self):
        return False

    def init_configurables(self):
        super().init_configurables()
        # the contents manager adds a /files/ handler serving the working directory
        self.contents_manager.files_handler_class = None

    def init_webapp(self):
        super().init_webapp()
        # as in the hub's single-user extension: tornado's own XSRF check runs before the
        # hub's identity provider can tell token requests (exempt) from cookie ones
        self.web_app.settings["xsrf_cookies"] = False


#: what service mode sets unless config says otherwise: {section: {trait: value}}
SERVICE_DEFAULTS = {
    "RolePolicy": {"has_owner": False, "hub_admin_role": "admin"},
}
if "share_engines" in EngineSupervisor.class_trait_names():
    SERVICE_DEFAULTS["EngineSupervisor"] = {"share_engines": True}


class BodhiService(BodhiApp):
    """The bodhi extension in service mode (see the module's docstring)."""

    name = "bodhi_service"
    load_other_extensions = False
    serverapp_class = ServiceServerApp

    open_browser = False

    @classmethod
    def get_extension_package(cls):
        return MODULE  # this module's extension point, not the package's BodhiApp

    @default("kernel_credentials")
    def _default_kernel_credentials(self):
        return False  # the service runs no kernels

    def initialize_handlers(self):
        from .handlers import service as service_handlers

        self.handlers.extend(service_handlers.default_handlers)
        super().initialize_handlers()  # ends with the catch-all bodhi/(.*)

    def initialize_settings(self):
        apply_defaults(self.config, SERVICE_DEFAULTS)  # before the configurables exist
        super().initialize_settings()


def apply_defaults(config, defaults: dict) -> None:
    """Set each value where config has none (config, the command line included, wins)."""
    for section, values in defaults.items():
        for key, value in values.items():
            if key not in config[section]:
                config[section][key] = value


MODULE = "bodhi_jupyter.service"


def _jupyter_server_extension_points():
    return [{"module": MODULE, "app": BodhiService}]


def main(argv=None):
    BodhiService.launch_instance(argv)


if __name__ == "__main__":  # python -m bodhi_jupyter.service: run the importable copy
    from bodhi_jupyter.service import main as _main

    _main()
