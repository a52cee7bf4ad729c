"""Which role a Jupyter user has in bodhi."""

from __future__ import annotations

from traitlets import Dict, Enum, Unicode
from traitlets.config import LoggingConfigurable

from .identity import server_owner
from .scopes import ROLES


class RolePolicy(LoggingConfigurable):
    """The owner of a server is its admin; everyone else gets ``default_role`` unless named
    in ``user_roles`` or in a JupyterHub group listed in ``group_roles``."""

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
        help="Role per JupyterHub group; the highest of a user's groups applies.",
    ).tag(config=True)

    owner = Unicode(help="Name of the server's owner; default: the hub user or OS user.").tag(
        config=True)

    def role_of(self, name: str, groups: list[str] | tuple[str, ...] = ()) -> str:
        if name in self.user_roles:
            return self.user_roles[name]
        if name == (self.owner or server_owner()):
            return self.owner_role
        from_groups = [self.group_roles[g] for g in groups if g in self.group_roles]
        if from_groups:
            return max(from_groups, key=ROLES.index)
        return self.default_role
