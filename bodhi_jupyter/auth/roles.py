"""Which role a Jupyter user has in bodhi."""

from __future__ import annotations

from collections.abc import Iterable

from traitlets import Bool, Dict, Enum, Unicode
from traitlets.config import LoggingConfigurable

from .identity import server_owner
from .scopes import ROLES

#: the JupyterHub custom scope that makes its holder a bodhi admin (README: "JupyterHub
#: shared service" shows how to register and grant it)
HUB_ADMIN_SCOPE = "custom:bodhi:admin"


class RolePolicy(LoggingConfigurable):
    """The owner of a server is its admin; everyone else gets ``default_role`` unless named
    in ``user_roles``, in a JupyterHub group listed in ``group_roles``, a hub admin (with
    ``hub_admin_role`` set) or holding the hub scope ``admin_scope``."""

    owner_role = Enum(ROLES, "admin", help="Role of the person who owns this server.").tag(
        config=True)

    default_role = Enum(
        ROLES, "user", help="Role of any other authenticated user (a shared server)."
    ).tag(config=True)

    user_roles = Dict(
        value_trait=Enum(ROLES), help="Role per user name, e.g. {'alice': 'power_user'}."
    ).tag(config=True)

    group_roles = Dict(
        value_trait=Enum(ROLES),
        help="Role per JupyterHub group; the highest of a user's groups applies. In the "
        "hub's shared service, e.g. {'bodhi-admins': 'admin'} makes that group's members "
        "admins.",
    ).tag(config=True)

    owner = Unicode(help="Name of the server's owner; default: the hub user or OS user.").tag(
        config=True)

    has_owner = Bool(
        True, help="Whether one person owns this server (a Jupyter or single-user server). "
        "False for the hub-wide shared service (bodhi-service), where nobody is admin by "
        "owning it: admins come from hub_admin_role, group_roles, user_roles and "
        "admin_scope.",
    ).tag(config=True)

    hub_admin_role = Enum(
        ROLES, None, allow_none=True,
        help="Role of JupyterHub admins (the hub's own admin flag). None: no role of their "
        "own. bodhi-service sets 'admin'.",
    ).tag(config=True)

    admin_scope = Unicode(
        HUB_ADMIN_SCOPE,
        help="A JupyterHub scope whose holders are bodhi admins: register it in "
        "c.JupyterHub.custom_scopes and grant it with a hub role (browser logins get it "
        "only when the service's or spawner's oauth_client_allowed_scopes list it). "
        "Empty: no scope grants admin.",
    ).tag(config=True)

    def role_of(self, name: str, groups: Iterable[str] = (), *, hub_admin: bool = False,
                scopes: Iterable[str] = ()) -> str:
        if name in self.user_roles:
            return self.user_roles[name]
        if self.has_owner and name == (self.owner or server_owner()):
            return self.owner_role
        granted = [self.group_roles[g] for g in groups if g in self.group_roles]
        if hub_admin and self.hub_admin_role:
            granted.append(self.hub_admin_role)
        if self.admin_scope and self.admin_scope in scopes:
            granted.append("admin")
        if granted:
            return max(granted, key=ROLES.index)
        return self.default_role
