"""A user's server that sends its inference to the hub's shared bodhi service
(``BodhiApp.service_url``) instead of starting engines of its own.

The service is one more upstream (models/upstreams.py), fixed by config: its models are
listed and served under their own names (no prefix), every local file and alias is left
out. Requests carry the server's own ``JUPYTERHUB_API_TOKEN``, which the hub resolves to the
server's owner, so the service counts usage and applies quotas to that person, not to a
server. Only the owner's requests are forwarded (their Jupyter login, hub token or a
kernel's bodhi token): anyone else the hub lets into this server would spend the owner's
quota, so they are sent to the service itself.
"""

from __future__ import annotations

import os

from .auth.principal import Principal
from .errors import BodhiAPIError

#: the name of the service's upstream (taken: no stored upstream may use it)
SERVICE_UPSTREAM = "hub-service"


def service_api_url(service_url: str) -> str:
    """The service's OpenAI base URL from its root (``.../services/bodhi/``)."""
    return service_url.rstrip("/") + "/bodhi/v1"


class ServiceForwarding:
    def __init__(self, service_url: str, owner: str, token: str | None = None, log=None):
        self.base_url = service_api_url(service_url)
        self.owner = owner
        self.token = token if token is not None else os.environ.get("JUPYTERHUB_API_TOKEN")
        if not self.token and log is not None:
            log.error("bodhi: BodhiApp.service_url is set but this server has no "
                      "$JUPYTERHUB_API_TOKEN to call the service with; requests will fail")

    def install(self, registry, upstreams) -> None:
        upstreams.add_fixed(SERVICE_UPSTREAM, self.base_url, self.token or None, prefix="")
        registry.local = False

    def check_caller(self, principal: Principal) -> None:
        if principal.name != self.owner:
            raise BodhiAPIError(
                403, f"This server sends inference to the hub's bodhi service as its owner "
                f"'{self.owner}'; call the service yourself ({self.base_url})",
                code="forbidden")
