"""Who owns a request, for sharing engines between requests of the same person.

Jupyter's own token and password logins produce a fresh anonymous name per token request;
every such caller is the person who started the server, so they share one owner: the OS
user. JupyterHub and custom identity providers give real, stable names; those are used.
"""

from __future__ import annotations

import functools
import getpass
import os

from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider, User


@functools.lru_cache(maxsize=1)
def server_owner() -> str:
    """The person this server belongs to: the hub user in a single-user server, else the
    OS user running it."""
    if os.environ.get("JUPYTERHUB_USER"):
        return os.environ["JUPYTERHUB_USER"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "owner"


def owner_name(user: User, provider: IdentityProvider | None) -> str:
    hub_user = getattr(user, "hub_user", None)
    if isinstance(hub_user, dict) and hub_user.get("name"):
        return hub_user["name"]
    if provider is None or type(provider) in (IdentityProvider, PasswordIdentityProvider):
        return server_owner()
    return user.username
